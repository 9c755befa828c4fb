//! Human review of tool calls: `HumanInTheLoopMiddleware`.
//!
//! It speaks LangChain's wire format. In batched mode (the default) it pauses once per
//! model turn, after the model, with every reviewed call of that turn:
//!
//! ```json
//! {"action_requests": [{"name": "send_email", "args": {"to": "a@b.c"}, "description": "..."}],
//!  "review_configs":  [{"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"],
//!                       "args_schema": {..}}]}
//! ```
//!
//! and is resumed with `{"decisions": [..]}`, one decision per action request, in order.
//! Every resume is checked before it is stored: the number of decisions, the allowed
//! types, `edited_action` present, edited arguments valid against the tool's schema, no
//! switching tools. In per-call mode it pauses inside each reviewed call's own task,
//! one interrupt per call, answered by interrupt id with one decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::middleware::{HookOutput, Hooks, Middleware, ToolCallRequest, ToolNext};
use super::{AgentState, AgentStateUpdate, output_text};
use crate::context::NodeContext;
use crate::error::NodeError;
use crate::interrupt::InterruptRequest;
use crate::interrupt::{ResumeKind, ResumeValidator};
use crate::message::{Message, ToolCall};
use crate::policy::{Action, Decision, DecisionType, HitlResponse, InterruptPolicy, PolicyMap};
use crate::tool::{ToolError, ToolSet};

const BATCHED_KIND: &str = "hitl.batched";
const PER_CALL_KIND: &str = "hitl.tool_approval";

/// What a reviewer is asked about one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The tool.
    pub name: String,
    /// The model's arguments.
    pub args: Value,
    /// What the reviewer is told.
    pub description: String,
}

/// What a reviewer may decide about one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewConfig {
    /// The tool.
    pub action_name: String,
    /// The decisions allowed.
    pub allowed_decisions: Vec<DecisionType>,
    /// The JSON schema edited arguments must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_schema: Option<Arc<Value>>,
}

/// The interrupt value of a batched review: one action request and one review config
/// per reviewed call, in the order the model made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitlRequest {
    /// The calls.
    pub action_requests: Vec<ActionRequest>,
    /// What may be decided about each.
    pub review_configs: Vec<ReviewConfig>,
}

/// The interrupt value of a per-call review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolApprovalRequest {
    /// Always `"tool_approval"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The call's id.
    pub tool_call_id: String,
    /// The tool.
    pub name: String,
    /// The model's arguments.
    pub args: Value,
    /// What the reviewer is told.
    pub description: String,
    /// The decisions allowed.
    pub allowed_decisions: Vec<DecisionType>,
    /// The JSON schema edited arguments must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_schema: Option<Arc<Value>>,
}

/// Batched (one interrupt per model turn) or per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReviewMode {
    /// One interrupt after each model turn with every reviewed call (the default).
    #[default]
    Batched,
    /// One interrupt per reviewed call, inside the call's own task; calls that are not
    /// reviewed run at once.
    PerCall,
}

/// The default text put before the result of an edited call.
pub const DEFAULT_EDIT_NOTICE: &str = "A human reviewer edited this tool call before it ran, so the call in your \
     message is not the one that was executed. The edit was authorized; do not repeat the original call.";

/// Pauses risky tool calls for a human to approve, edit, reject or answer.
#[derive(Debug, Clone)]
pub struct HumanInTheLoop {
    overrides: Option<PolicyMap>,
    policies: HashMap<String, InterruptPolicy>,
    /// Per reviewed tool: its review config, built once.
    configs: HashMap<String, ReviewConfig>,
    description_prefix: String,
    edit_notice: Option<String>,
    mode: ReviewMode,
}

/// The name LangChain gives this middleware.
pub type HumanInTheLoopMiddleware = HumanInTheLoop;

impl HumanInTheLoop {
    fn with(overrides: Option<PolicyMap>) -> Self {
        HumanInTheLoop {
            overrides,
            policies: HashMap::new(),
            configs: HashMap::new(),
            description_prefix: "Tool execution requires approval".into(),
            edit_notice: Some(DEFAULT_EDIT_NOTICE.into()),
            mode: ReviewMode::Batched,
        }
    }

    /// Reviews calls as the tools' `#[tool(interrupt(..))]` attributes say.
    pub fn from_tools() -> Self {
        Self::with(None)
    }

    /// Reviews calls as `policies` (`interrupt_on! {..}`) says; tools it does not
    /// mention keep their attribute's policy.
    pub fn new(policies: PolicyMap) -> Self {
        Self::with(Some(policies))
    }

    /// The first line of the default description (default "Tool execution requires
    /// approval").
    pub fn description_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.description_prefix = prefix.into();
        self
    }

    /// The text before an edited call's result; `None` leaves results as they are.
    pub fn edit_notice(mut self, notice: Option<String>) -> Self {
        self.edit_notice = notice;
        self
    }

    /// Batched or per-call review.
    pub fn mode(mut self, mode: ReviewMode) -> Self {
        self.mode = mode;
        self
    }

    /// Per-call review: one interrupt per reviewed call.
    pub fn per_call(self) -> Self {
        self.mode(ReviewMode::PerCall)
    }

    fn review(&self, call: &ToolCall) -> Option<&InterruptPolicy> {
        self.policies
            .get(&call.name)
            .filter(|p| p.gates(&call.args))
    }

    /// The description shown for a call: the policy's, or the default
    /// `"{prefix}\n\nTool: {name}\nArgs: {args as compact JSON, keys sorted}"`.
    fn describe(&self, call: &ToolCall, policy: &InterruptPolicy) -> String {
        policy.describe(&call.args).unwrap_or_else(|| {
            format!(
                "{}\n\nTool: {}\nArgs: {}",
                self.description_prefix,
                call.name,
                sorted_json(&call.args)
            )
        })
    }

    fn annotate(
        &self,
        action: &Action,
        output: Result<Value, ToolError>,
    ) -> Result<Value, ToolError> {
        let Some(notice) = &self.edit_notice else {
            return output;
        };
        let head = format!(
            "{notice} Executed instead: {} with arguments {}.",
            action.name,
            sorted_json(&action.args)
        );
        let with = |text: String| {
            if text.is_empty() {
                head.clone()
            } else {
                format!("{head}\n\nTool response:\n{text}")
            }
        };
        match output {
            Ok(value) => Ok(Value::String(with(output_text(&value)))),
            Err(ToolError::Interrupted) => Err(ToolError::Interrupted),
            Err(e) => Err(ToolError::Failed(with(e.to_string()))),
        }
    }

    fn edits_cleared(state: &AgentState) -> HookOutput {
        if state.edited_tool_calls.is_empty() {
            HookOutput::none()
        } else {
            HookOutput::update(AgentStateUpdate::default().edited_tool_calls(BTreeMap::new()))
        }
    }
}

fn sorted_json(value: &Value) -> String {
    fn is_sorted(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                o.keys().zip(o.keys().skip(1)).all(|(a, b)| a < b) && o.values().all(is_sorted)
            }
            Value::Array(a) => a.iter().all(is_sorted),
            _ => true,
        }
    }
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let sorted: BTreeMap<&String, Value> =
                    o.iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    if is_sorted(value) {
        // Always the case unless serde_json's `preserve_order` is on.
        return value.to_string();
    }
    sort(value).to_string()
}

/// The texts of Part A of the reference behaviour.
fn reject_text(name: &str, id: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("User rejected the tool call for `{name}` with reason: {m}"),
        None => format!(
            "User rejected the tool call for `{name}` with id {id}. The tool was not executed. \
             Do not retry this tool call unless the user explicitly requests it."
        ),
    }
}

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
fn decision_schema(name: &str, allowed: &[DecisionType]) -> Value {
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
type Offer = (String, Vec<DecisionType>);

/// The resume schema of a review, built once per process for each sequence of offers:
/// a batched review (one decision per offer, in order) or a per-call review (`None`:
/// the decision alone, for the single offer).
fn review_schema(offers: Vec<Offer>, batched: bool) -> Arc<Value> {
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

/// Batched reviews: answers are checked by [`validate_batched`]; the schema is derived
/// from the review configs, so it is not stored with each interrupt.
struct BatchedKind;

impl ResumeKind for BatchedKind {
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>> {
        validate_batched(payload, answer)
    }

    fn schema(&self, payload: &Value) -> Option<Arc<Value>> {
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
struct PerCallKind;

impl ResumeKind for PerCallKind {
    fn check(&self, payload: &Value, answer: &Value) -> Result<(), Vec<String>> {
        validate_per_call(payload, answer)
    }

    fn schema(&self, payload: &Value) -> Option<Arc<Value>> {
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

fn batched_schema_of(items: Vec<Value>) -> Value {
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
    index: Option<usize>,
    decision: &Value,
    name: &str,
    allowed: &[DecisionType],
    args_schema: Option<&Value>,
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
                check_edited_action(&at, value, name, args_schema, &mut problems);
            }
        }
    }
    problems
}

/// Checks an edit's `edited_action`: the same tool, and arguments its schema accepts.
fn check_edited_action(
    at: &str,
    action: &Value,
    name: &str,
    args_schema: Option<&Value>,
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
            if let Some(schema) = args_schema
                && let Err(errors) = crate::schema::validate(schema, args)
            {
                problems.push(format!(
                    "{at}: the edited arguments do not match the tool's schema: {}",
                    errors.join("; ")
                ));
            }
        }
        _ => problems.push(format!("{at}: `edited_action` needs `args`, an object")),
    }
    for key in action.keys().filter(|k| *k != "name" && *k != "args") {
        problems.push(format!("{at}: unexpected field `{key}` in `edited_action`"));
    }
}

fn validate_batched(payload: &Value, value: &Value) -> Result<(), Vec<String>> {
    let request = HitlRequest::deserialize(payload)
        .map_err(|e| vec![format!("the interrupt is not a review request: {e}")])?;
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
    let expected = request.review_configs.len();
    if decisions.len() != expected {
        problems.push(format!(
            "{} decision{} for {expected} action request{}: give exactly one decision per action request, in order",
            decisions.len(),
            if decisions.len() == 1 { "" } else { "s" },
            if expected == 1 { "" } else { "s" },
        ));
        return Err(problems);
    }
    for (i, (decision, config)) in decisions.iter().zip(&request.review_configs).enumerate() {
        problems.extend(check_decision(
            Some(i),
            decision,
            &config.action_name,
            &config.allowed_decisions,
            config.args_schema.as_deref(),
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn validate_per_call(payload: &Value, value: &Value) -> Result<(), Vec<String>> {
    let request = ToolApprovalRequest::deserialize(payload)
        .map_err(|e| vec![format!("the interrupt is not a tool approval request: {e}")])?;
    let problems = check_decision(
        None,
        value,
        &request.name,
        &request.allowed_decisions,
        request.args_schema.as_deref(),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[async_trait::async_trait]
impl Middleware for HumanInTheLoop {
    fn name(&self) -> &str {
        "HumanInTheLoopMiddleware"
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            after_model: self.mode == ReviewMode::Batched,
            ..Hooks::default()
        }
    }

    fn resume_validators(&self) -> Vec<(String, ResumeValidator)> {
        vec![
            (BATCHED_KIND.into(), Arc::new(BatchedKind)),
            (PER_CALL_KIND.into(), Arc::new(PerCallKind)),
        ]
    }

    fn bind_tools(&mut self, tools: &ToolSet) -> Result<(), String> {
        if let Some(overrides) = &self.overrides {
            for name in overrides.names() {
                if tools.get(name).is_none() {
                    return Err(format!(
                        "the review policies name `{name}`, which is not a tool of this agent; its tools: {}",
                        tools.names().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        for tool in tools.iter() {
            let name = tool.name();
            let policy = match self.overrides.as_ref().and_then(|o| o.get(name)) {
                Some(entry) => entry.clone(),
                None => tool.policy(),
            };
            if let Some(policy) = policy {
                let config = ReviewConfig {
                    action_name: name.to_owned(),
                    allowed_decisions: policy.allowed().iter().collect(),
                    args_schema: Some(tool.args_schema()),
                };
                self.configs.insert(name.to_owned(), config);
                self.policies.insert(name.to_owned(), policy);
            }
        }
        Ok(())
    }

    async fn after_model(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        let Some(ai) = state.messages.iter().rev().find_map(Message::as_assistant) else {
            return Ok(Self::edits_cleared(state));
        };
        let reviewed: Vec<(&ToolCall, &InterruptPolicy)> = ai
            .tool_calls
            .iter()
            .filter_map(|c| self.review(c).map(|p| (c, p)))
            .collect();
        if reviewed.is_empty() {
            return Ok(Self::edits_cleared(state));
        }
        // Built only the first time: a resumed run gets its answer without it.
        let request = || {
            let request = HitlRequest {
                action_requests: reviewed
                    .iter()
                    .map(|(c, p)| ActionRequest {
                        name: c.name.clone(),
                        args: c.args.clone(),
                        description: self.describe(c, p),
                    })
                    .collect(),
                review_configs: reviewed
                    .iter()
                    .map(|(c, _)| self.configs[&c.name].clone())
                    .collect(),
            };
            let offers: Vec<Offer> = request
                .review_configs
                .iter()
                .map(|c| (c.action_name.clone(), c.allowed_decisions.clone()))
                .collect();
            Ok(InterruptRequest {
                value: serde_json::to_value(&request)
                    .map_err(|e| format!("the review request does not serialize: {e}"))?,
                resume_schema: Some(review_schema(offers, true)),
                kind: Some(BATCHED_KIND.into()),
            })
        };
        let answer = cx.interrupt_lazy(request)?;
        let response: HitlResponse = serde_json::from_value(answer)?;
        let mut edits = BTreeMap::new();
        let mut synthetic = Vec::new();
        for ((call, _), decision) in reviewed.iter().zip(response.decisions) {
            let id = call.id.clone().unwrap_or_default();
            match decision {
                Decision::Approve => {}
                Decision::Edit { edited_action } => {
                    edits.insert(id, edited_action);
                }
                Decision::Reject { message } => synthetic.push(Message::tool_error(
                    id.clone(),
                    call.name.clone(),
                    reject_text(&call.name, &id, message.as_deref()),
                )),
                Decision::Respond { message } => {
                    synthetic.push(Message::tool(id, call.name.clone(), message));
                }
            }
        }
        let mut update = AgentStateUpdate::default().edited_tool_calls(edits);
        if !synthetic.is_empty() {
            update = update.messages(synthetic);
        }
        Ok(HookOutput::update(update))
    }

    async fn wrap_tool_call(
        &self,
        mut request: ToolCallRequest<'_>,
        next: ToolNext<'_>,
    ) -> Result<Value, ToolError> {
        let id = request.call.id.clone().unwrap_or_default();
        if self.mode == ReviewMode::Batched {
            let Some(action) = request.state.edited_tool_calls.get(&id).cloned() else {
                return next.run(request).await;
            };
            request.call.name.clone_from(&action.name);
            request.call.args = action.args.clone();
            let output = next.run(request).await;
            return self.annotate(&action, output);
        }
        let Some(policy) = self.review(&request.call) else {
            return next.run(request).await;
        };
        let approval = ToolApprovalRequest {
            kind: "tool_approval".into(),
            tool_call_id: id.clone(),
            name: request.call.name.clone(),
            args: request.call.args.clone(),
            description: self.describe(&request.call, policy),
            allowed_decisions: policy.allowed().iter().collect(),
            args_schema: self
                .configs
                .get(&request.call.name)
                .and_then(|c| c.args_schema.clone()),
        };
        let allowed = approval.allowed_decisions.clone();
        let answer = request.cx.interrupt_with(InterruptRequest {
            value: serde_json::to_value(&approval).map_err(ToolError::msg)?,
            resume_schema: Some(review_schema(vec![(approval.name.clone(), allowed)], false)),
            kind: Some(PER_CALL_KIND.into()),
        })?;
        let decision: Decision = serde_json::from_value(answer).map_err(ToolError::msg)?;
        match decision {
            Decision::Approve => next.run(request).await,
            Decision::Edit { edited_action } => {
                request.call.args = edited_action.args.clone();
                let output = next.run(request).await;
                self.annotate(&edited_action, output)
            }
            Decision::Reject { message } => Err(ToolError::Rejected(reject_text(
                &approval.name,
                &id,
                message.as_deref(),
            ))),
            Decision::Respond { message } => Ok(Value::String(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &serde_json::Map<String, Value>) -> Vec<&str> {
        v.keys().map(String::as_str).collect()
    }

    fn request() -> Value {
        json!({
            "action_requests": [
                {"name": "send_email", "args": {"to": "a"}, "description": "d"},
                {"name": "delete_file", "args": {"path": "x"}, "description": "d"}
            ],
            "review_configs": [
                {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"],
                 "args_schema": {"type": "object", "properties": {"to": {"type": "string"}},
                                 "required": ["to"], "additionalProperties": false}},
                {"action_name": "delete_file", "allowed_decisions": ["approve", "reject"]}
            ]
        })
    }

    #[test]
    fn batched_resumes_are_checked_with_messages_naming_the_problem() {
        let p = request();
        let ok = json!({"decisions": [
            {"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "b"}}},
            {"type": "reject", "message": "no"}
        ]});
        assert_eq!(validate_batched(&p, &ok), Ok(()));
        let cases = [
            (
                json!("yes"),
                "expected {\"decisions\": [..]} with one decision per action request, got \"yes\"",
            ),
            (
                json!({"decision": []}),
                "missing `decisions`: expected {\"decisions\": [..]} with one decision per action request",
            ),
            (
                json!({"decisions": [{"type": "approve"}]}),
                "1 decision for 2 action requests: give exactly one decision per action request, in order",
            ),
            (
                json!({"decisions": [{"type": "respond", "message": "x"}, {"type": "approve"}]}),
                "decision 0 (`send_email`): `respond` is not allowed for this tool; allowed: `approve`, `edit`, `reject`",
            ),
            (
                json!({"decisions": [{"type": "maybe"}, {"type": "approve"}]}),
                "decision 0 (`send_email`): unknown decision type `maybe`; expected one of `approve`, `edit`, `reject`",
            ),
            (
                json!({"decisions": [{"type": "edit"}, {"type": "approve"}]}),
                "decision 0 (`send_email`): an edit needs `edited_action`: {\"name\": \"send_email\", \"args\": {..}}",
            ),
            (
                json!({"decisions": [{"type": "edit", "edited_action": {"name": "draft_email", "args": {"to": "b"}}}, {"type": "approve"}]}),
                "decision 0 (`send_email`): an edit may not switch tools: `send_email` was edited to `draft_email`",
            ),
            (
                json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"too": 1}}}, {"type": "approve"}]}),
                "decision 0 (`send_email`): the edited arguments do not match the tool's schema",
            ),
        ];
        for (value, expected) in cases {
            let problems = validate_batched(&p, &value).unwrap_err();
            assert!(
                problems.iter().any(|m| m.starts_with(expected)),
                "{value}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_published_schema_agrees_with_the_validator() {
        let p = request();
        let req: HitlRequest = serde_json::from_value(request()).unwrap();
        let schema = batched_schema_of(
            req.review_configs
                .iter()
                .map(|c| decision_schema(&c.action_name, &c.allowed_decisions))
                .collect(),
        );
        assert_eq!(
            BatchedKind.schema(&p).as_deref(),
            Some(&schema),
            "the schema derived from a stored payload is the one published"
        );
        let good = json!({"decisions": [{"type": "approve"}, {"type": "reject"}]});
        let bad = json!({"decisions": [{"type": "approve"}, {"type": "edit", "edited_action": {"name": "delete_file", "args": {}}}]});
        assert!(crate::schema::validate(&schema, &good).is_ok());
        assert!(validate_batched(&p, &good).is_ok());
        assert!(crate::schema::validate(&schema, &bad).is_err());
        assert!(validate_batched(&p, &bad).is_err());
        assert_eq!(
            keys(schema.as_object().unwrap()),
            ["additionalProperties", "properties", "required", "type"]
        );
    }

    #[test]
    fn default_descriptions_and_reject_texts_are_deterministic() {
        let hitl = HumanInTheLoop::from_tools();
        let call = ToolCall::new("send_email", json!({"to": "a", "body": "b"}), "c1");
        assert_eq!(
            hitl.describe(&call, &InterruptPolicy::all()),
            "Tool execution requires approval\n\nTool: send_email\nArgs: {\"body\":\"b\",\"to\":\"a\"}"
        );
        assert_eq!(
            reject_text("send_email", "c1", Some("no")),
            "User rejected the tool call for `send_email` with reason: no"
        );
        assert!(reject_text("send_email", "c1", Some("")).starts_with(
            "User rejected the tool call for `send_email` with id c1. The tool was not executed."
        ));
    }
}
