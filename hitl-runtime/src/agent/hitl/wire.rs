//! The review's wire types: LangChain's JSON shapes, with hitl's governance fields.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BATCHED_KIND, PER_CALL_KIND};
use crate::policy::{Action, Decision, DecisionType, HitlResponse};

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

/// What governs one call's review, in its review config or per-call request: all
/// absent for a tool whose policy declares none of it, except `policy_digest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReviewRules {
    /// When the review expires (ms since the Unix epoch), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The decision applied when it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<Decision>,
    /// The roles that may decide (empty: anyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// How many distinct reviewers must approve (absent: one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<u32>,
    /// The digest of the tool's policy and argument schema when the review was raised
    /// ([`InterruptPolicy::digest`](crate::policy::InterruptPolicy::digest)); answering after it changed is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
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
    /// The governance of the call's review (hitl's addition to the wire format).
    #[serde(flatten)]
    pub rules: ReviewRules,
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
    /// The governance of the call's review (hitl's addition to the wire format).
    #[serde(flatten)]
    pub rules: ReviewRules,
}

impl crate::Interrupt for HitlRequest {
    type Resume = HitlResponse;
    const NAME: Option<&'static str> = Some(BATCHED_KIND);

    /// The schema depends on the reviewed tools: it is published with each interrupt
    /// ([`crate::PendingInterrupt::resume_schema`]).
    fn resume_schema() -> Option<Arc<Value>> {
        None
    }
}

impl crate::Interrupt for ToolApprovalRequest {
    type Resume = Decision;
    const NAME: Option<&'static str> = Some(PER_CALL_KIND);

    /// The schema depends on the tool: it is published with each interrupt
    /// ([`crate::PendingInterrupt::resume_schema`]).
    fn resume_schema() -> Option<Arc<Value>> {
        None
    }
}

impl ActionRequest {
    /// The JSON of the request, built from its parts (the same as serializing it).
    pub(super) fn into_json(self) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("name".into(), Value::String(self.name));
        object.insert("args".into(), self.args);
        object.insert("description".into(), Value::String(self.description));
        Value::Object(object)
    }
}

impl HitlRequest {
    /// The JSON of a request from the JSON of its parts (the same as serializing it).
    pub(super) fn json_of(action_requests: Vec<Value>, review_configs: Vec<Value>) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("action_requests".into(), Value::Array(action_requests));
        object.insert("review_configs".into(), Value::Array(review_configs));
        Value::Object(object)
    }
}

/// A reviewed call that may run: exactly the action a reviewer approved (the model's
/// call as shown) or wrote (an edit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewedCall {
    /// What runs.
    pub action: Action,
    /// Whether the reviewer edited it (its result then carries the edit notice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
}
