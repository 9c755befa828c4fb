//! Interrupt policies and review decisions.
//!
//! A tool's policy says whether a human reviews its calls, which decisions the reviewer
//! may take, what the reviewer is told, and (optionally) which calls are reviewed.
//! `#[tool(interrupt(..))]` writes it; `interrupt_on! { .. }` overrides it per agent.
//!
//! Decisions have a wire form ([`Decision`], LangChain's JSON) and typed constructors
//! that only compile for decisions the tool allows:
//!
//! ```
//! # use hitl_runtime::{tool, Decision, ToolError};
//! /// Send an email.
//! #[tool(interrupt(allowed = [approve, edit, reject]))]
//! async fn send_email(to: String, body: String) -> Result<String, ToolError> {
//!     Ok(format!("sent to {to}"))
//! }
//!
//! let ok = Decision::approve::<send_email>();
//! let edited = Decision::edit::<send_email>(SendEmailArgs { to: "bob@example.com".into(), body: "hi".into() });
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::BitOr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tool::Tool;

/// One kind of review decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionType {
    /// Run the call as the model wrote it.
    Approve,
    /// Run it with the reviewer's arguments.
    Edit,
    /// Do not run it; tell the model why (a tool message with status `error`).
    Reject,
    /// Do not run it; answer in its place (a tool message with status `success`).
    Respond,
}

impl DecisionType {
    /// All four, in wire order.
    pub const ALL: [DecisionType; 4] = [
        DecisionType::Approve,
        DecisionType::Edit,
        DecisionType::Reject,
        DecisionType::Respond,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionType::Approve => "approve",
            DecisionType::Edit => "edit",
            DecisionType::Reject => "reject",
            DecisionType::Respond => "respond",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for DecisionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of decision types that keeps the order they were added in: the order a
/// policy declares them is the order `allowed_decisions` lists them on the wire.
/// Equality and hashing ignore the order.
#[derive(Clone, Copy, Default)]
pub struct DecisionSet {
    /// One bit per decision type.
    bits: u8,
    /// The decision types in order, two bits each.
    order: u8,
}

impl DecisionSet {
    /// No decision.
    pub const NONE: DecisionSet = DecisionSet { bits: 0, order: 0 };
    /// Every decision, in wire order.
    pub const ALL: DecisionSet = DecisionSet {
        bits: 0b1111,
        order: 0b11_10_01_00,
    };

    /// Whether `d` is in the set.
    pub fn contains(self, d: DecisionType) -> bool {
        self.bits & d.bit() != 0
    }

    /// Adds a decision (at the end, unless it is already in the set).
    pub fn with(self, d: DecisionType) -> Self {
        if self.contains(d) {
            return self;
        }
        DecisionSet {
            bits: self.bits | d.bit(),
            order: self.order | (d as u8) << (2 * self.len()),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// How many decisions are in the set.
    pub fn len(self) -> usize {
        self.bits.count_ones() as usize
    }

    /// The decisions, in the order they were added.
    pub fn iter(self) -> impl Iterator<Item = DecisionType> {
        (0..self.len()).map(move |i| DecisionType::ALL[usize::from(self.order >> (2 * i) & 0b11)])
    }
}

impl PartialEq for DecisionSet {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl Eq for DecisionSet {}

impl std::hash::Hash for DecisionSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits.hash(state);
    }
}

impl fmt::Debug for DecisionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<DecisionType> for DecisionSet {
    fn from(d: DecisionType) -> Self {
        DecisionSet::NONE.with(d)
    }
}

impl<const N: usize> From<[DecisionType; N]> for DecisionSet {
    fn from(list: [DecisionType; N]) -> Self {
        list.into_iter().fold(DecisionSet::NONE, DecisionSet::with)
    }
}

impl BitOr for DecisionType {
    type Output = DecisionSet;
    fn bitor(self, rhs: DecisionType) -> DecisionSet {
        DecisionSet::from(self).with(rhs)
    }
}

impl BitOr<DecisionType> for DecisionSet {
    type Output = DecisionSet;
    fn bitor(self, rhs: DecisionType) -> DecisionSet {
        self.with(rhs)
    }
}

/// The message of the rejection applied when a review without a declared
/// `on_timeout` expires.
pub const EXPIRED_MESSAGE: &str =
    "No reviewer decided before the review expired, so the call was not executed.";

type DescribeFn = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;
type WhenFn = Arc<dyn Fn(&Value) -> Option<bool> + Send + Sync>;

/// What the reviewer is told about a call.
#[derive(Clone)]
pub enum Description {
    /// A template: `{param}` is replaced with the argument (strings as they are,
    /// other values as JSON); `{{` and `}}` are literal braces.
    Template(Arc<str>),
    /// A function of the call's arguments (`None` when the arguments do not decode:
    /// the default description is used then).
    Function(DescribeFn),
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Description::Template(t) => f.debug_tuple("Template").field(t).finish(),
            Description::Function(_) => f.write_str("Function(..)"),
        }
    }
}

/// Renders a description template with the call's arguments.
pub fn render_template(template: &str, args: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                match args.get(&name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) => out.push_str(&v.to_string()),
                    None => {
                        out.push('{');
                        out.push_str(&name);
                        out.push('}');
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A tool's human-review policy.
#[derive(Clone)]
pub struct InterruptPolicy {
    allowed: DecisionSet,
    description: Option<Description>,
    when: Option<WhenFn>,
    expires: Option<Duration>,
    on_timeout: Option<Decision>,
    reviewers: Vec<String>,
    approvals: u32,
}

impl fmt::Debug for InterruptPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterruptPolicy")
            .field("allowed", &self.allowed)
            .field("description", &self.description)
            .field("when", &self.when.as_ref().map(|_| ".."))
            .field("expires", &self.expires)
            .field("on_timeout", &self.on_timeout)
            .field("reviewers", &self.reviewers)
            .field("approvals", &self.approvals)
            .finish()
    }
}

impl InterruptPolicy {
    /// Review every call, allowing these decisions.
    ///
    /// # Panics
    /// If `allowed` is empty: a policy nobody can answer would leave the call
    /// ungated or stuck. (`#[tool]` and `interrupt_on!` reject this at compile time.)
    pub fn allowing(allowed: impl Into<DecisionSet>) -> Self {
        let allowed = allowed.into();
        assert!(
            !allowed.is_empty(),
            "an interrupt policy must allow at least one decision"
        );
        InterruptPolicy {
            allowed,
            description: None,
            when: None,
            expires: None,
            on_timeout: None,
            reviewers: Vec::new(),
            approvals: 1,
        }
    }

    /// Review every call, allowing every decision.
    pub fn all() -> Self {
        Self::allowing(DecisionSet::ALL)
    }

    /// Tells the reviewer this, with `{param}` placeholders.
    pub fn description(mut self, template: impl Into<Arc<str>>) -> Self {
        self.description = Some(Description::Template(template.into()));
        self
    }

    /// Tells the reviewer what `describe` returns for the call's arguments.
    pub fn describe_with(
        mut self,
        describe: impl Fn(&Value) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.description = Some(Description::Function(Arc::new(describe)));
        self
    }

    /// Reviews only the calls for which `when` returns `Some(true)`; `None` (the
    /// arguments do not decode) counts as "review".
    pub fn when(mut self, when: impl Fn(&Value) -> Option<bool> + Send + Sync + 'static) -> Self {
        self.when = Some(Arc::new(when));
        self
    }

    /// The review expires after `after`: its timeout decision is applied
    /// ([`crate::CompiledGraph::expire_due`]) and later answers are refused. The
    /// timeout decision is [`on_timeout`](Self::on_timeout)'s, by default a rejection
    /// (the call does not run).
    pub fn expires(mut self, after: Duration) -> Self {
        self.expires = Some(after);
        self
    }

    /// The decision applied when the review expires.
    pub fn on_timeout(mut self, decision: Decision) -> Self {
        self.on_timeout = Some(decision);
        self
    }

    /// Only reviewers with one of these roles may decide.
    pub fn reviewers<R: Into<String>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        self.reviewers = roles.into_iter().map(Into::into).collect();
        self
    }

    /// A call runs only when `n` distinct reviewers approved it; one rejection decides.
    pub fn approvals(mut self, n: u32) -> Self {
        self.approvals = n;
        self
    }

    /// The decisions a reviewer may take.
    pub fn allowed(&self) -> DecisionSet {
        self.allowed
    }

    /// How long a review waits, if it expires.
    pub fn expiry(&self) -> Option<Duration> {
        self.expires
    }

    /// The decision applied when the review expires: the declared one, else a
    /// rejection with [`EXPIRED_MESSAGE`]. `None` if it does not expire.
    pub fn timeout_decision(&self) -> Option<Decision> {
        self.expires?;
        Some(self.on_timeout.clone().unwrap_or_else(|| Decision::Reject {
            message: Some(EXPIRED_MESSAGE.to_owned()),
        }))
    }

    /// The roles that may decide (empty: anyone).
    pub fn reviewer_roles(&self) -> &[String] {
        &self.reviewers
    }

    /// How many distinct reviewers must approve.
    pub fn required_approvals(&self) -> u32 {
        self.approvals
    }

    /// Checks the rules `#[tool]` checks at compile time, for policies built at run time.
    pub fn check(&self) -> Result<(), String> {
        if let Some(d) = &self.on_timeout {
            if self.expires.is_none() {
                return Err(
                    "`on_timeout` needs `expires`: a review that never expires never times out"
                        .into(),
                );
            }
            if matches!(d, Decision::Edit { .. }) {
                return Err("`on_timeout` cannot be `edit`: nobody writes the arguments when a review times out".into());
            }
            if !self.allowed.contains(d.kind()) {
                return Err(format!(
                    "`on_timeout` is `{}`, which the policy does not allow",
                    d.kind()
                ));
            }
        }
        if self.approvals == 0 {
            return Err("`approvals` must be at least 1".into());
        }
        if self.approvals > 1 && !self.allowed.contains(DecisionType::Approve) {
            return Err("`approvals` above 1 needs `approve` among the allowed decisions".into());
        }
        if self.approvals > 1 && self.allowed.contains(DecisionType::Edit) {
            return Err("`approvals` above 1 cannot be combined with `edit`: reviewers would approve different calls".into());
        }
        if self.reviewers.iter().any(String::is_empty) {
            return Err("`reviewers` names an empty role".into());
        }
        Ok(())
    }

    /// A digest (SHA-256, hex) of this policy and a tool's argument schema: what a
    /// pending review is bound to. A description function and a `when` filter are not
    /// part of it (code cannot be hashed); a description template is.
    pub fn digest(&self, tool: &str, args_schema: &Value) -> String {
        let description = match &self.description {
            Some(Description::Template(t)) => serde_json::json!(t.as_ref()),
            Some(Description::Function(_)) => serde_json::json!("<function>"),
            None => Value::Null,
        };
        let canonical = serde_json::json!({
            "tool": tool,
            "allowed": self.allowed.iter().collect::<Vec<_>>(),
            "description": description,
            "expires_s": self.expires.map(|d| d.as_secs()),
            "on_timeout": self.on_timeout,
            "reviewers": self.reviewers,
            "approvals": self.approvals,
            "args_schema": args_schema,
        });
        crate::checkpoint::sha256_hex(canonical.to_string().as_bytes())
    }

    /// Whether a call with these arguments is reviewed.
    pub fn gates(&self, args: &Value) -> bool {
        match &self.when {
            Some(when) => when(args).unwrap_or(true),
            None => true,
        }
    }

    /// The description of a call, if the policy has one that applies.
    pub fn describe(&self, args: &Value) -> Option<String> {
        match self.description.as_ref()? {
            Description::Template(t) => Some(render_template(t, args)),
            Description::Function(f) => f(args),
        }
    }
}

/// Policies by tool name, overriding the tools' own (`interrupt_on!`).
///
/// `None` for a tool means "never review it"; a tool not in the map keeps the policy
/// of its `#[tool]` attribute.
#[derive(Debug, Clone, Default)]
pub struct PolicyMap {
    entries: BTreeMap<&'static str, Option<InterruptPolicy>>,
}

impl PolicyMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the policy of tool `T`.
    pub fn set<T: Tool>(mut self, policy: Option<InterruptPolicy>) -> Self {
        self.entries.insert(T::NAME, policy);
        self
    }

    /// Sets a policy by tool name (for tools known only at run time).
    pub fn set_named(mut self, name: &'static str, policy: Option<InterruptPolicy>) -> Self {
        self.entries.insert(name, policy);
        self
    }

    /// The entry for a tool: `None` if the map says nothing about it.
    pub fn get(&self, tool: &str) -> Option<&Option<InterruptPolicy>> {
        self.entries.get(tool)
    }

    /// The tool names in the map.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }
}

/// A tool call as a reviewer edited it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The tool's name (an edit may not switch tools).
    pub name: String,
    /// The arguments to run it with.
    pub args: Value,
}

/// A reviewer's decision about one call, in LangChain's wire format:
/// `{"type": "approve"}`, `{"type": "edit", "edited_action": {"name", "args"}}`,
/// `{"type": "reject", "message"?: ..}`, `{"type": "respond", "message": ..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Decision {
    /// Run it as proposed.
    Approve,
    /// Run it with other arguments.
    Edit {
        /// The call to run.
        edited_action: Action,
    },
    /// Do not run it.
    Reject {
        /// Why, for the model. Absent or empty: a default text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Do not run it; this is the result.
    Respond {
        /// The result the model sees.
        message: String,
    },
}

impl Decision {
    /// The decision's type.
    pub fn kind(&self) -> DecisionType {
        match self {
            Decision::Approve => DecisionType::Approve,
            Decision::Edit { .. } => DecisionType::Edit,
            Decision::Reject { .. } => DecisionType::Reject,
            Decision::Respond { .. } => DecisionType::Respond,
        }
    }

    /// Approve a call of `T`. Compiles only if `T` allows `approve`.
    pub fn approve<T: AllowsApprove>() -> Decision {
        Decision::Approve
    }

    /// Run a call of `T` with these arguments instead. Compiles only if `T` allows
    /// `edit`; the arguments are `T`'s own args type.
    ///
    /// # Panics
    /// If the arguments do not serialize to JSON (they are a `#[tool]` args struct, so
    /// they do).
    pub fn edit<T: AllowsEdit>(args: T::Args) -> Decision {
        Decision::Edit {
            edited_action: Action {
                name: T::NAME.to_owned(),
                args: serde_json::to_value(args).expect("tool arguments serialize to JSON"),
            },
        }
    }

    /// Reject a call of `T`, telling the model why. Compiles only if `T` allows
    /// `reject`.
    pub fn reject<T: AllowsReject>(message: impl Into<String>) -> Decision {
        let message: String = message.into();
        Decision::Reject {
            message: (!message.is_empty()).then_some(message),
        }
    }

    /// Answer in place of a call of `T`. Compiles only if `T` allows `respond`.
    pub fn respond<T: AllowsRespond>(message: impl Into<String>) -> Decision {
        Decision::Respond {
            message: message.into(),
        }
    }
}

/// The resume value of a batched review: one decision per reviewed call, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitlResponse {
    /// The decisions.
    pub decisions: Vec<Decision>,
}

impl<I: IntoIterator<Item = Decision>> From<I> for HitlResponse {
    fn from(decisions: I) -> Self {
        HitlResponse {
            decisions: decisions.into_iter().collect(),
        }
    }
}

/// Implemented by tools whose policy allows `approve`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not allow `approve`",
    label = "this tool's policy does not allow `approve`",
    note = "add `approve` to `#[tool(interrupt(allowed = [..]))]` on `{Self}`"
)]
pub trait AllowsApprove: Tool {}

/// Implemented by tools whose policy allows `edit`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not allow `edit`",
    label = "this tool's policy does not allow `edit`",
    note = "add `edit` to `#[tool(interrupt(allowed = [..]))]` on `{Self}`"
)]
pub trait AllowsEdit: Tool {}

/// Implemented by tools whose policy allows `reject`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not allow `reject`",
    label = "this tool's policy does not allow `reject`",
    note = "add `reject` to `#[tool(interrupt(allowed = [..]))]` on `{Self}`"
)]
pub trait AllowsReject: Tool {}

/// Implemented by tools whose policy allows `respond`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not allow `respond`",
    label = "this tool's policy does not allow `respond`",
    note = "add `respond` to `#[tool(interrupt(allowed = [..]))]` on `{Self}`"
)]
pub trait AllowsRespond: Tool {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_arguments_and_escapes() {
        let args = json!({"path": "a.txt", "n": 3, "flags": ["x"]});
        assert_eq!(
            render_template(
                "Delete {path} ({n} files, {flags}) {{literal}} {missing}",
                &args
            ),
            "Delete a.txt (3 files, [\"x\"]) {literal} {missing}"
        );
    }

    #[test]
    fn decision_sets_keep_the_declared_order() {
        use DecisionType::*;
        let set = DecisionSet::from([Reject, Approve, Reject, Respond]);
        assert_eq!(set.iter().collect::<Vec<_>>(), [Reject, Approve, Respond]);
        assert_eq!(set.len(), 3);
        assert_eq!(set, DecisionSet::from([Approve, Respond, Reject]));
        assert!(!set.contains(Edit));
        assert_eq!(
            DecisionSet::ALL.iter().collect::<Vec<_>>(),
            DecisionType::ALL
        );
        assert_eq!(DecisionSet::ALL, DecisionSet::from(DecisionType::ALL));
        assert!(DecisionSet::NONE.is_empty());
    }

    #[test]
    fn decisions_use_the_wire_format() {
        let list = vec![
            Decision::Approve,
            Decision::Edit {
                edited_action: Action {
                    name: "send_email".into(),
                    args: json!({"to": "b"}),
                },
            },
            Decision::Reject { message: None },
            Decision::Respond {
                message: "done".into(),
            },
        ];
        assert_eq!(
            serde_json::to_value(HitlResponse::from(list)).unwrap(),
            json!({"decisions": [
                {"type": "approve"},
                {"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "b"}}},
                {"type": "reject"},
                {"type": "respond", "message": "done"}
            ]})
        );
    }

    #[test]
    fn when_defaults_to_reviewing() {
        let p = InterruptPolicy::all().when(|args| args.get("path").map(|p| p != "tmp.txt"));
        assert!(!p.gates(&json!({"path": "tmp.txt"})));
        assert!(p.gates(&json!({"path": "x.txt"})));
        assert!(p.gates(&json!({})), "undecodable arguments are reviewed");
    }
}
