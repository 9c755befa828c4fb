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

use serde_json::Value;

use super::middleware::{HookOutput, Hooks, Middleware, ToolCallRequest, ToolNext};
use super::{AgentState, AgentStateUpdate, output_text, unanswered_calls};
use crate::context::NodeContext;
use crate::error::NodeError;
use crate::governance::Reviewer;
use crate::interrupt::InterruptRequest;
use crate::interrupt::PolicyChange;
use crate::interrupt::ResumeValidator;
use crate::message::{Message, ToolCall};
use crate::policy::{Action, Decision, HitlResponse, InterruptPolicy, PolicyMap};
use crate::tool::{ToolError, ToolSet};
use rules::MigrateFn;
use rules::{Batched, Bindings, Offer, PerCall, ReviewKind, review_schema};

mod governed;
mod inbox;
mod rules;
mod wire;

pub use wire::{
    ActionRequest, HitlRequest, ReviewConfig, ReviewRules, ReviewedCall, ToolApprovalRequest,
};

const BATCHED_KIND: &str = "hitl.batched";
const PER_CALL_KIND: &str = "hitl.tool_approval";

/// A reviewed tool's review config and its JSON, both built once: a review without a
/// deadline puts the JSON in its request as it is.
#[derive(Debug, Clone)]
struct Configured {
    config: ReviewConfig,
    json: Value,
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

/// The default text put before the result of an edited call: LangChain's wording, so
/// prompts and evaluations tuned to it keep working. It is followed by
/// ` Executed instead: {tool} with arguments {args}.` (the arguments as Python's
/// `json.dumps` writes them) and, if the tool returned something,
/// `\n\nTool response:\n{output}`.
pub const DEFAULT_EDIT_NOTICE: &str = "Note: a human reviewer replaced this tool call before it ran. The call \
     recorded in your message is the one you produced, not the one that executed. This was \
     intentional and authorized. Do not re-issue your original call.";

/// Pauses risky tool calls for a human to approve, edit, reject or answer.
#[derive(Clone)]
pub struct HumanInTheLoop {
    overrides: Option<PolicyMap>,
    policies: HashMap<String, InterruptPolicy>,
    /// Per reviewed tool: its review config, built once.
    configs: HashMap<String, Configured>,
    /// The agent's tools (their decoders check edits).
    tools: ToolSet,
    description_prefix: String,
    edit_notice: Option<String>,
    mode: ReviewMode,
    bindings: Arc<Bindings>,
    migrate: Option<MigrateFn>,
    authorize: Option<AuthorizeFn>,
}

impl std::fmt::Debug for HumanInTheLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HumanInTheLoop")
            .field("overrides", &self.overrides)
            .field("policies", &self.policies)
            .field("mode", &self.mode)
            .field("description_prefix", &self.description_prefix)
            .field("edit_notice", &self.edit_notice)
            .field("on_policy_change", &self.migrate.as_ref().map(|_| ".."))
            .field("authorize", &self.authorize.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// Re-checks an approved call just before it runs ([`HumanInTheLoop::authorize`]).
type AuthorizeFn = Arc<dyn Fn(&AuthorizeRequest<'_>) -> Result<(), String> + Send + Sync>;

/// An approved (or edited) call about to run, for [`HumanInTheLoop::authorize`].
#[derive(Debug)]
pub struct AuthorizeRequest<'a> {
    /// The call, with the arguments it runs with.
    pub call: &'a ToolCall,
    /// Whether a reviewer edited it.
    pub edited: bool,
    /// Who answered the review in this run (`None`: not said).
    pub reviewer: Option<&'a Reviewer>,
}

/// The name LangChain gives this middleware.
pub type HumanInTheLoopMiddleware = HumanInTheLoop;

impl HumanInTheLoop {
    fn with(overrides: Option<PolicyMap>) -> Self {
        HumanInTheLoop {
            overrides,
            policies: HashMap::new(),
            configs: HashMap::new(),
            tools: ToolSet::new(),
            description_prefix: "Tool execution requires approval".into(),
            edit_notice: Some(DEFAULT_EDIT_NOTICE.into()),
            mode: ReviewMode::Batched,
            bindings: Arc::default(),
            migrate: None,
            authorize: None,
        }
    }

    /// Accepts answers to reviews raised under another version of a tool's policy
    /// when `accept` returns `true` for the change; otherwise such an answer is
    /// [`ResumeError::PolicyChanged`](crate::ResumeError::PolicyChanged). The pending
    /// call itself is never rewritten: what runs is what the reviewer saw.
    pub fn on_policy_change(
        mut self,
        accept: impl Fn(&PolicyChange) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.migrate = Some(Arc::new(accept));
        self
    }

    /// Runs `check` just before an approved or edited call executes; an error stops
    /// the call (the model gets the message as the call's error). Approval is not
    /// execution authority: re-check mandates and arguments against current facts
    /// here.
    pub fn authorize(
        mut self,
        check: impl Fn(&AuthorizeRequest<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Arc::new(check));
        self
    }

    fn authorized(&self, call: &ToolCall, edited: bool, cx: &NodeContext) -> Result<(), ToolError> {
        let Some(check) = &self.authorize else {
            return Ok(());
        };
        let reviewer = cx.decided_by();
        check(&AuthorizeRequest {
            call,
            edited,
            reviewer,
        })
        .map_err(|why| {
            ToolError::Rejected(format!(
                "The call `{}` was approved but not authorized to run: {why}",
                call.name
            ))
        })
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

    /// The description shown for a call: the policy's, or LangChain's default
    /// `"{prefix}\n\nTool: {name}\nArgs: {args as Python prints them}"`.
    fn describe(&self, call: &ToolCall, policy: &InterruptPolicy) -> String {
        policy.describe(&call.args).unwrap_or_else(|| {
            format!(
                "{}\n\nTool: {}\nArgs: {}",
                self.description_prefix,
                call.name,
                super::texts::python_repr(&call.args)
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
            super::texts::python_json(&action.args)
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

    /// The text of a tool message for a reviewed call that reached the tools without a
    /// decision bound to it (another route into the tools node skipped the review).
    fn unreviewed_text(name: &str, id: &str) -> String {
        format!(
            "The tool call `{name}` (id {id}) needs a human decision and has none, so it was \
             not executed. Do not retry it unless the user asks for it."
        )
    }
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
            (
                BATCHED_KIND.into(),
                Arc::new(ReviewKind::<Batched>::new(
                    self.tools.clone(),
                    self.bindings.clone(),
                )),
            ),
            (
                PER_CALL_KIND.into(),
                Arc::new(ReviewKind::<PerCall>::new(
                    self.tools.clone(),
                    self.bindings.clone(),
                )),
            ),
        ]
    }

    fn enforces_review_policies(&self) -> bool {
        true
    }

    fn bind_tools(&mut self, tools: &ToolSet) -> Result<(), String> {
        self.tools = tools.clone();
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
        let mut digests = HashMap::new();
        for tool in tools.iter() {
            let name = tool.name();
            let policy = match self.overrides.as_ref().and_then(|o| o.get(name)) {
                Some(entry) => entry.clone(),
                None => tool.policy(),
            };
            if let Some(policy) = policy {
                policy
                    .check()
                    .map_err(|e| format!("the review policy of `{name}`: {e}"))?;
                let schema = tool.args_schema();
                let digest = policy.digest(name, &schema);
                let config = ReviewConfig {
                    action_name: name.to_owned(),
                    allowed_decisions: policy.allowed().iter().collect(),
                    args_schema: Some(schema),
                    rules: ReviewRules {
                        expires_at: None,
                        on_timeout: policy.timeout_decision(),
                        reviewers: policy.reviewer_roles().to_vec(),
                        approvals: (policy.required_approvals() > 1)
                            .then_some(policy.required_approvals()),
                        policy_digest: Some(digest.clone()),
                    },
                };
                digests.insert(name.to_owned(), digest);
                let json = serde_json::to_value(&config).map_err(|e| {
                    format!("the review config of `{name}` does not serialize: {e}")
                })?;
                self.configs
                    .insert(name.to_owned(), Configured { config, json });
                self.policies.insert(name.to_owned(), policy);
            }
        }
        self.bindings = Arc::new(Bindings {
            digests,
            migrate: self.migrate.clone(),
        });
        Ok(())
    }

    async fn after_model(
        &self,
        state: &AgentState,
        cx: &NodeContext,
    ) -> Result<HookOutput, NodeError> {
        // The calls of the last model turn that have no answer yet (an invalid call is
        // answered by the model node and never reviewed).
        let reviewed: Vec<(&ToolCall, &InterruptPolicy)> = unanswered_calls(&state.messages)
            .into_iter()
            .filter_map(|c| self.review(c).map(|p| (c, p)))
            .collect();
        if reviewed.is_empty() {
            // What the last review recorded stays until the next one replaces it: its
            // call ids are never used again (the model node gives every call a fresh
            // id), so it cannot authorize another call.
            return Ok(HookOutput::none());
        }
        // Built only the first time: a resumed run gets its answer without it.
        let request = || {
            let now = crate::ids::now_ms();
            let entries: Vec<&Configured> = reviewed
                .iter()
                .map(|(c, _)| &self.configs[&c.name])
                .collect();
            let configs: Vec<&ReviewConfig> = entries.iter().map(|e| &e.config).collect();
            let (mut governance, timeouts) = self.governance(&reviewed, &configs, now);
            let review_configs: Vec<Value> = match (governance.expires, timeouts) {
                (Some(expires), Some(timeouts)) => {
                    // Each config carries this review's deadline and timeout decision.
                    let at = now.saturating_add(expires.as_millis() as u64);
                    let stamped = configs
                        .iter()
                        .zip(&timeouts)
                        .map(|(config, decision)| {
                            let mut config = (*config).clone();
                            config.rules.expires_at = Some(at);
                            config.rules.on_timeout = Some(decision.clone());
                            serde_json::to_value(config)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("the review request does not serialize: {e}"))?;
                    governance.on_timeout = Some(
                        serde_json::to_value(HitlResponse::from(timeouts))
                            .map_err(|e| format!("the timeout decisions do not serialize: {e}"))?,
                    );
                    stamped
                }
                _ => entries.iter().map(|e| e.json.clone()).collect(),
            };
            let action_requests = reviewed
                .iter()
                .map(|(c, p)| {
                    ActionRequest {
                        name: c.name.clone(),
                        args: c.args.clone(),
                        description: self.describe(c, p),
                    }
                    .into_json()
                })
                .collect();
            let offers: Vec<Offer> = configs
                .iter()
                .map(|c| (c.action_name.clone(), c.allowed_decisions.clone()))
                .collect();
            Ok(InterruptRequest {
                value: HitlRequest::json_of(action_requests, review_configs),
                resume_schema: Some(review_schema(offers, true)),
                kind: Some(BATCHED_KIND.into()),
                payload_type: Some(BATCHED_KIND.into()),
                governance: None,
            }
            .governed(governance))
        };
        let answer = cx.interrupt_lazy(request)?;
        let response: HitlResponse = serde_json::from_value(answer)?;
        let mut runs = BTreeMap::new();
        let mut synthetic = Vec::new();
        for ((call, _), decision) in reviewed.iter().zip(response.decisions) {
            let id = call.id.clone().unwrap_or_default();
            match decision {
                Decision::Approve => {
                    let action = Action {
                        name: call.name.clone(),
                        args: call.args.clone(),
                    };
                    runs.insert(
                        id,
                        ReviewedCall {
                            action,
                            edited: false,
                        },
                    );
                }
                Decision::Edit { edited_action } => {
                    runs.insert(
                        id,
                        ReviewedCall {
                            action: edited_action,
                            edited: true,
                        },
                    );
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
        let mut update = AgentStateUpdate::default().reviewed_tool_calls(runs);
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
            // Fail closed: a reviewed call runs only as a reviewer decided, whatever
            // route led to the tools node.
            let Some(reviewed) = request.state.reviewed_tool_calls.get(&id).cloned() else {
                if self.review(&request.call).is_some() {
                    return Err(ToolError::Rejected(Self::unreviewed_text(
                        &request.call.name,
                        &id,
                    )));
                }
                return next.run(request).await;
            };
            if reviewed.action.name != request.call.name {
                return Err(ToolError::Rejected(Self::unreviewed_text(
                    &request.call.name,
                    &id,
                )));
            }
            request.call.args = reviewed.action.args.clone();
            self.authorized(&request.call, reviewed.edited, request.cx)?;
            let output = next.run(request).await;
            return if reviewed.edited {
                self.annotate(&reviewed.action, output)
            } else {
                output
            };
        }
        let Some(policy) = self.review(&request.call) else {
            return next.run(request).await;
        };
        let now = crate::ids::now_ms();
        let config = self.configs.get(&request.call.name).map(|c| &c.config);
        let (mut governance, timeouts) =
            self.governance(&[(&request.call, policy)], config.as_slice(), now);
        let mut approval = ToolApprovalRequest {
            kind: "tool_approval".into(),
            tool_call_id: id.clone(),
            name: request.call.name.clone(),
            args: request.call.args.clone(),
            description: self.describe(&request.call, policy),
            allowed_decisions: policy.allowed().iter().collect(),
            args_schema: config.as_ref().and_then(|c| c.args_schema.clone()),
            rules: ReviewRules {
                expires_at: None,
                on_timeout: None,
                ..config.as_ref().map(|c| c.rules.clone()).unwrap_or_default()
            },
        };
        if let (Some(expires), Some(timeout)) = (
            governance.expires,
            timeouts.and_then(|t| t.into_iter().next()),
        ) {
            approval.rules.expires_at = Some(now.saturating_add(expires.as_millis() as u64));
            governance.on_timeout = Some(serde_json::to_value(&timeout).map_err(ToolError::msg)?);
            approval.rules.on_timeout = Some(timeout);
        }
        let allowed = approval.allowed_decisions.clone();
        let answer = request.cx.interrupt_with(
            InterruptRequest {
                value: serde_json::to_value(&approval).map_err(ToolError::msg)?,
                resume_schema: Some(review_schema(vec![(approval.name.clone(), allowed)], false)),
                kind: Some(PER_CALL_KIND.into()),
                payload_type: Some(PER_CALL_KIND.into()),
                governance: None,
            }
            .governed(governance),
        )?;
        let decision: Decision = serde_json::from_value(answer).map_err(ToolError::msg)?;
        match decision {
            Decision::Approve => {
                self.authorized(&request.call, false, request.cx)?;
                next.run(request).await
            }
            Decision::Edit { edited_action } => {
                request.call.args = edited_action.args.clone();
                self.authorized(&request.call, true, request.cx)?;
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
mod tests;
