//! The decision rules of a review: one table of the fields each decision type takes,
//! from which both the published resume schema and the checks on every resume are
//! made, and the interrupt kinds that apply them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::interrupt::{InPlaceKind, PolicyChange, Refusal, ResumeKind, Vote};
use crate::policy::DecisionType;
use crate::tool::{ToolError, ToolSet};

/// What a field of a decision holds.
#[derive(Clone, Copy)]
enum FieldKind {
    /// A string.
    Text,
    /// `{"name": <the reviewed tool>, "args": {..}}`.
    EditedAction,
}

/// A field a decision type takes besides `type`.
struct Field {
    name: &'static str,
    required: bool,
    kind: FieldKind,
    /// What to say when a required field is missing.
    missing: &'static str,
}

/// The fields of each decision type: the one source of the review's published JSON
/// schema ([`decision_schema`]) and of the checks that run on every resume
/// ([`check_decision`]).
fn fields(kind: DecisionType) -> &'static [Field] {
    const EDITED_ACTION: Field = Field {
        name: "edited_action",
        required: true,
        kind: FieldKind::EditedAction,
        missing: "an edit needs `edited_action`",
    };
    const REASON: Field = Field {
        name: "message",
        required: false,
        kind: FieldKind::Text,
        missing: "",
    };
    const RESPONSE: Field = Field {
        name: "message",
        required: true,
        kind: FieldKind::Text,
        missing: "a respond decision needs `message`, the text the model sees",
    };
    match kind {
        DecisionType::Approve => &[],
        DecisionType::Edit => &[EDITED_ACTION],
        DecisionType::Reject => &[REASON],
        DecisionType::Respond => &[RESPONSE],
    }
}

/// The JSON schema of one decision about tool `name`.
pub(super) fn decision_schema(name: &str, allowed: &[DecisionType]) -> Value {
    let branches: Vec<Value> = allowed
        .iter()
        .map(|d| {
            let mut properties = serde_json::Map::new();
            properties.insert("type".into(), json!({"const": d.as_str()}));
            let mut required = vec!["type"];
            for field in fields(*d) {
                let schema = match field.kind {
                    FieldKind::Text => json!({"type": "string"}),
                    FieldKind::EditedAction => json!({
                        "type": "object",
                        "properties": {"name": {"const": name}, "args": {"type": "object"}},
                        "required": ["name", "args"],
                        "additionalProperties": false
                    }),
                };
                properties.insert(field.name.into(), schema);
                if field.required {
                    required.push(field.name);
                }
            }
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        })
        .collect();
    json!({"oneOf": branches})
}

/// What a review offers for one call: the tool and the decisions allowed.
pub(super) type Offer = (String, Vec<DecisionType>);

/// The resume schema of a review, built once per process for each sequence of offers:
/// a batched review (one decision per offer, in order) or a per-call review (`None`:
/// the decision alone, for the single offer).
pub(super) fn review_schema(offers: Vec<Offer>, batched: bool) -> Arc<Value> {
    type Cache = std::sync::Mutex<HashMap<(Vec<Offer>, bool), Arc<Value>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (offers, batched);
    if let Some(schema) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return schema.clone();
    }
    let decisions = key
        .0
        .iter()
        .map(|(name, allowed)| decision_schema(name, allowed));
    let schema = Arc::new(if batched {
        batched_schema_of(decisions.collect())
    } else {
        decisions.into_iter().next().unwrap_or(Value::Bool(false))
    });
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= 1024 {
        cache.clear();
    }
    cache.insert(key, schema.clone());
    schema
}

/// What a review config offers, read without its schema.
#[derive(Deserialize)]
struct Offered {
    action_name: String,
    allowed_decisions: Vec<DecisionType>,
}

/// Decides whether a review raised under another version of a tool's policy may still
/// be answered (`true`: accept the pending call).
pub(super) type MigrateFn = Arc<dyn Fn(&PolicyChange) -> bool + Send + Sync>;

/// What reviews are bound to: each reviewed tool's current policy digest.
#[derive(Default)]
pub(super) struct Bindings {
    pub(super) digests: HashMap<String, String>,
    pub(super) migrate: Option<MigrateFn>,
}

impl Bindings {
    /// Compares the digests a review was raised with to the current ones; a migration
    /// may accept a change.
    fn check<'a>(
        &self,
        raised: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<(), PolicyChange> {
        for (tool, digest) in raised {
            // Reviews raised before digests were stored are not bound.
            let Some(digest) = digest else { continue };
            let current = self.digests.get(tool);
            if current.map(String::as_str) == Some(digest) {
                continue;
            }
            let change = PolicyChange {
                tool: tool.to_owned(),
                raised: digest.to_owned(),
                current: current.cloned(),
            };
            if self.migrate.as_ref().is_some_and(|accept| accept(&change)) {
                continue;
            }
            return Err(change);
        }
        Ok(())
    }
}

/// How a list of decision types counts toward a quorum.
fn vote_of(types: impl IntoIterator<Item = DecisionType>) -> Vote {
    let (mut approves, mut declines) = (false, false);
    for t in types {
        if t == DecisionType::Approve {
            approves = true;
        } else {
            declines = true;
        }
    }
    match (approves, declines) {
        (true, false) => Vote::Approves,
        (true, true) => Vote::Mixed,
        _ => Vote::Decides,
    }
}

#[derive(Deserialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: DecisionType,
}

/// What a stored review config offers for one call, borrowed from its JSON text: the
/// tool, the decisions allowed, the digest it is bound to, and the argument schema
/// (left as text; it is read only to check an edit). A stored per-call review
/// ([`super::ToolApprovalRequest`]) is read as one too: its tool is its `name`.
#[derive(Deserialize)]
pub(super) struct OfferView<'a> {
    #[serde(borrow, alias = "name")]
    action_name: Cow<'a, str>,
    allowed_decisions: Vec<DecisionType>,
    #[serde(default, borrow)]
    args_schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    policy_digest: Option<Cow<'a, str>>,
}

/// A stored batched review, borrowed from its JSON text.
#[derive(Deserialize)]
pub(super) struct BatchedView<'a> {
    #[serde(borrow)]
    review_configs: Vec<OfferView<'a>>,
}

/// The payload as JSON text, for the kinds' `Value` entry points (used by callers
/// holding a decoded payload; resumes read the stored text in place).
fn as_raw(payload: &Value) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(payload)
        .map_err(|e| format!("the interrupt payload does not serialize: {e}"))
}

/// What the two review kinds differ in: the payload's shape, the digests it was raised
/// with, how an Agent Inbox answer translates, the checks, the vote and the schema.
/// Judging an answer, the policy binding and normalizing are the same steps over either
/// shape: one [`InPlaceKind`] and one [`ResumeKind`] for both.
pub(super) trait Shape: 'static {
    /// The stored payload, borrowed from its JSON text.
    type View<'a>: Deserialize<'a>;
    /// What the payload is, for the error when it is not one.
    const WHAT: &'static str;

    /// What the review offers for each call it covers (with the digest it was raised
    /// under).
    fn offers<'v, 'a>(view: &'v Self::View<'a>) -> &'v [OfferView<'a>];
    /// Agent Inbox's `HumanResponse` answer, translated per policy (see `inbox`).
    fn normalize_in(view: &Self::View<'_>, answer: &Value) -> Option<Value>;
    fn check_in(tools: &ToolSet, view: &Self::View<'_>, answer: &Value) -> Result<(), Vec<String>>;
    /// How an answer counts toward a quorum.
    fn vote(answer: &Value) -> Vote;
    /// The resume schema the payload's policies give (see [`review_schema`]).
    fn schema(payload: &Value) -> Option<Arc<Value>>;
}

fn view_of<K: Shape>(payload: &RawValue) -> Result<K::View<'_>, String> {
    serde_json::from_str(payload.get())
        .map_err(|e| format!("the interrupt is not {}: {e}", K::WHAT))
}

/// A review kind (the resume check of one shape of review), with the agent's tools
/// (edited arguments must decode with the tool's own decoder) and the digests its
/// reviews are bound to.
pub(super) struct ReviewKind<K> {
    tools: ToolSet,
    bindings: Arc<Bindings>,
    shape: PhantomData<fn() -> K>,
}

impl<K: Shape> ReviewKind<K> {
    pub(super) fn new(tools: ToolSet, bindings: Arc<Bindings>) -> Self {
        ReviewKind {
            tools,
            bindings,
            shape: PhantomData,
        }
    }

    fn binding_of(&self, view: &K::View<'_>) -> Result<(), PolicyChange> {
        self.bindings.check(
            K::offers(view)
                .iter()
                .map(|c| (c.action_name.as_ref(), c.policy_digest.as_deref())),
        )
    }
}

impl<K: Shape> InPlaceKind for ReviewKind<K> {
    fn judge(
        &self,
        payload: &RawValue,
        mut answer: Value,
        counts: bool,
    ) -> Result<(Value, Vote), Refusal> {
        // The binding is checked on whatever the payload holds (a payload that is not a
        // review request is refused by the check below).
        let view = view_of::<K>(payload);
        if let Ok(view) = &view {
            self.binding_of(view).map_err(Refusal::Changed)?;
            if let Some(normalized) = K::normalize_in(view, &answer) {
                answer = normalized;
            }
        }
        let view = view.map_err(|e| Refusal::Invalid(vec![e]))?;
        K::check_in(&self.tools, &view, &answer).map_err(Refusal::Invalid)?;
        let vote = if counts {
            K::vote(&answer)
        } else {
            Vote::Decides
        };
        Ok((answer, vote))
    }
}

impl<K: Shape> ResumeKind for ReviewKind<K> {
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>> {
        validate::<K>(&self.tools, payload, answer)
    }

    fn binding(&self, payload: &Value) -> Result<(), PolicyChange> {
        let Ok(raw) = as_raw(payload) else {
            return Ok(());
        };
        match view_of::<K>(&raw) {
            Ok(view) => self.binding_of(&view),
            Err(_) => Ok(()),
        }
    }

    fn vote(&self, _payload: &Value, answer: &Value) -> Vote {
        K::vote(answer)
    }

    fn schema(&self, payload: &Value) -> Option<Arc<Value>> {
        K::schema(payload)
    }

    fn normalize(&self, payload: &Value, answer: &Value) -> Option<Value> {
        let raw = as_raw(payload).ok()?;
        K::normalize_in(&view_of::<K>(&raw).ok()?, answer)
    }

    fn __in_place(&self) -> Option<&dyn InPlaceKind> {
        Some(self)
    }
}

/// Checks an answer against a decoded payload of either kind.
pub(super) fn validate<K: Shape>(
    tools: &ToolSet,
    payload: &Value,
    answer: &Value,
) -> Result<(), Vec<String>> {
    let raw = as_raw(payload).map_err(|e| vec![e])?;
    K::check_in(tools, &view_of::<K>(&raw).map_err(|e| vec![e])?, answer)
}

/// Batched reviews: answers are checked by [`check_batched`]; the schema is derived
/// from the review configs, so it is not stored with each interrupt.
pub(super) struct Batched;

impl Shape for Batched {
    type View<'a> = BatchedView<'a>;
    const WHAT: &'static str = "a review request";

    fn offers<'v, 'a>(view: &'v Self::View<'a>) -> &'v [OfferView<'a>] {
        &view.review_configs
    }

    /// A `HumanResponse` list, one per action request.
    fn normalize_in(view: &BatchedView<'_>, answer: &Value) -> Option<Value> {
        let responses = super::inbox::human_responses(answer)?;
        let allowed: Vec<Vec<DecisionType>> = view
            .review_configs
            .iter()
            .map(|c| c.allowed_decisions.clone())
            .collect();
        super::inbox::translate(&allowed, responses)
    }

    fn check_in(
        tools: &ToolSet,
        view: &BatchedView<'_>,
        answer: &Value,
    ) -> Result<(), Vec<String>> {
        check_batched(tools, view, answer)
    }

    fn vote(answer: &Value) -> Vote {
        #[derive(Deserialize)]
        struct Decisions {
            decisions: Vec<Typed>,
        }
        match Decisions::deserialize(answer) {
            Ok(d) => vote_of(d.decisions.into_iter().map(|t| t.kind)),
            Err(_) => Vote::Decides,
        }
    }

    fn schema(payload: &Value) -> Option<Arc<Value>> {
        #[derive(Deserialize)]
        struct Configs {
            review_configs: Vec<Offered>,
        }
        let configs = Configs::deserialize(payload).ok()?;
        let offers = configs
            .review_configs
            .into_iter()
            .map(|c| (c.action_name, c.allowed_decisions))
            .collect();
        Some(review_schema(offers, true))
    }
}

/// Per-call reviews, likewise.
pub(super) struct PerCall;

impl Shape for PerCall {
    type View<'a> = OfferView<'a>;
    const WHAT: &'static str = "a tool approval request";

    fn offers<'v, 'a>(view: &'v Self::View<'a>) -> &'v [OfferView<'a>] {
        std::slice::from_ref(view)
    }

    /// A `HumanResponse`, alone or in a one-item list.
    fn normalize_in(view: &OfferView<'_>, answer: &Value) -> Option<Value> {
        let responses = super::inbox::human_responses(answer)?;
        let mut translated =
            super::inbox::translate(std::slice::from_ref(&view.allowed_decisions), responses)?;
        match translated["decisions"].as_array_mut()?.as_mut_slice() {
            [one] => Some(one.take()),
            _ => None,
        }
    }

    fn check_in(tools: &ToolSet, view: &OfferView<'_>, answer: &Value) -> Result<(), Vec<String>> {
        check_per_call(tools, view, answer)
    }

    fn vote(answer: &Value) -> Vote {
        match Typed::deserialize(answer) {
            Ok(t) => vote_of([t.kind]),
            Err(_) => Vote::Decides,
        }
    }

    fn schema(payload: &Value) -> Option<Arc<Value>> {
        #[derive(Deserialize)]
        struct Request {
            name: String,
            allowed_decisions: Vec<DecisionType>,
        }
        let request = Request::deserialize(payload).ok()?;
        Some(review_schema(
            vec![(request.name, request.allowed_decisions)],
            false,
        ))
    }
}

pub(super) fn batched_schema_of(items: Vec<Value>) -> Value {
    let n = items.len();
    json!({
        "type": "object",
        "properties": {
            "decisions": {"type": "array", "prefixItems": items, "items": false, "minItems": n, "maxItems": n}
        },
        "required": ["decisions"],
        "additionalProperties": false
    })
}

fn list(allowed: &[DecisionType]) -> String {
    allowed
        .iter()
        .map(|d| format!("`{d}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one decision; returns its problems.
fn check_decision(
    tools: &ToolSet,
    index: Option<usize>,
    decision: &Value,
    name: &str,
    allowed: &[DecisionType],
    args_schema: Option<&RawValue>,
) -> Vec<String> {
    let at = match index {
        Some(i) => format!("decision {i} (`{name}`)"),
        None => format!("the decision for `{name}`"),
    };
    let Some(obj) = decision.as_object() else {
        return vec![format!(
            "{at}: expected an object such as {{\"type\": \"approve\"}}, got {decision}"
        )];
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return vec![format!(
            "{at}: missing `type`; expected one of {}",
            list(allowed)
        )];
    };
    let Some(kind) = DecisionType::ALL.into_iter().find(|d| d.as_str() == kind) else {
        return vec![format!(
            "{at}: unknown decision type `{kind}`; expected one of {}",
            list(allowed)
        )];
    };
    if !allowed.contains(&kind) {
        return vec![format!(
            "{at}: `{kind}` is not allowed for this tool; allowed: {}",
            list(allowed)
        )];
    }
    let mut problems = Vec::new();
    let fields = fields(kind);
    for key in obj
        .keys()
        .filter(|k| *k != "type" && !fields.iter().any(|f| f.name == *k))
    {
        problems.push(format!(
            "{at}: unexpected field `{key}` in a `{kind}` decision"
        ));
    }
    for field in fields {
        match (obj.get(field.name), field.kind) {
            (None, FieldKind::EditedAction) => problems.push(format!(
                "{at}: {}: {{\"name\": \"{name}\", \"args\": {{..}}}}",
                field.missing
            )),
            (None, FieldKind::Text) if field.required => {
                problems.push(format!("{at}: {}", field.missing));
            }
            (None, FieldKind::Text) => {}
            (Some(value), FieldKind::Text) => {
                if !value.is_string() {
                    problems.push(format!("{at}: `{}` must be a string", field.name));
                }
            }
            (Some(value), FieldKind::EditedAction) => {
                check_edited_action(tools, &at, value, name, args_schema, &mut problems);
            }
        }
    }
    problems
}

/// Checks an edit's `edited_action`: the same tool, and arguments its schema accepts.
fn check_edited_action(
    tools: &ToolSet,
    at: &str,
    action: &Value,
    name: &str,
    args_schema: Option<&RawValue>,
    problems: &mut Vec<String>,
) {
    let Some(action) = action.as_object() else {
        problems.push(format!(
            "{at}: `edited_action` must be an object: {{\"name\": \"{name}\", \"args\": {{..}}}}"
        ));
        return;
    };
    match action.get("name").and_then(Value::as_str) {
        None => problems.push(format!("{at}: `edited_action` needs `name` (\"{name}\")")),
        Some(other) if other != name => problems.push(format!(
            "{at}: an edit may not switch tools: `{name}` was edited to `{other}`"
        )),
        Some(_) => {}
    }
    match action.get("args") {
        Some(args @ Value::Object(_)) => {
            if let Err(e) = crate::schema::check_depth(args) {
                problems.push(format!("{at}: the edited arguments are too deep: {e}"));
            } else if let Some(schema) = args_schema
                && let Err(errors) = crate::schema::validate_raw(schema, args)
            {
                problems.push(format!(
                    "{at}: the edited arguments do not match the tool's schema: {}",
                    errors.join("; ")
                ));
            } else if let Some(tool) = tools.get(name)
                && let Err(e) = tool.check_args(args)
            {
                // The schema cannot say everything (integer ranges, formats): the
                // tool's own decoder has the last word, before anything is stored.
                let detail = match e {
                    ToolError::InvalidArgs { message, .. } => message,
                    other => other.to_string(),
                };
                problems.push(format!(
                    "{at}: the edited arguments do not decode as `{name}`'s arguments: {detail}"
                ));
            }
        }
        _ => problems.push(format!("{at}: `edited_action` needs `args`, an object")),
    }
    for key in action.keys().filter(|k| *k != "name" && *k != "args") {
        problems.push(format!("{at}: unexpected field `{key}` in `edited_action`"));
    }
}

/// Checks a batched answer against the payload's review configs.
fn check_batched(
    tools: &ToolSet,
    view: &BatchedView<'_>,
    value: &Value,
) -> Result<(), Vec<String>> {
    let shape = "expected {\"decisions\": [..]} with one decision per action request";
    let Some(obj) = value.as_object() else {
        return Err(vec![format!("{shape}, got {value}")]);
    };
    let Some(decisions) = obj.get("decisions") else {
        return Err(vec![format!("missing `decisions`: {shape}")]);
    };
    let Some(decisions) = decisions.as_array() else {
        return Err(vec![format!("`decisions` must be a list: {shape}")]);
    };
    let mut problems: Vec<String> = obj
        .keys()
        .filter(|k| *k != "decisions")
        .map(|k| format!("unexpected field `{k}`: {shape}"))
        .collect();
    let expected = view.review_configs.len();
    if decisions.len() != expected {
        problems.push(format!(
            "{} decision{} for {expected} action request{}: give exactly one decision per action request, in order",
            decisions.len(),
            if decisions.len() == 1 { "" } else { "s" },
            if expected == 1 { "" } else { "s" },
        ));
        return Err(problems);
    }
    for (i, (decision, offer)) in decisions.iter().zip(&view.review_configs).enumerate() {
        problems.extend(check_decision(
            tools,
            Some(i),
            decision,
            &offer.action_name,
            &offer.allowed_decisions,
            offer.args_schema,
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Checks a per-call answer against the payload's request.
fn check_per_call(tools: &ToolSet, view: &OfferView<'_>, value: &Value) -> Result<(), Vec<String>> {
    let problems = check_decision(
        tools,
        None,
        value,
        &view.action_name,
        &view.allowed_decisions,
        view.args_schema,
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
