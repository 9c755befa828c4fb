//! Every macro used through a renamed dependency, with `crate = "::hitl"`.

use hitl::{Decision, Interrupt, State, ToolError, interrupt_on, tool, tools};

/// Delete a file.
#[tool(crate = "::hitl", interrupt(allowed = [approve, reject]))]
pub async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(format!("deleted {path}"))
}

/// Read a file.
#[tool(crate = "::hitl")]
pub async fn read_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

/// A state with every kind of channel.
#[derive(
    State,
    Clone,
    Debug,
    Default,
    hitl::__private::serde::Serialize,
    hitl::__private::serde::Deserialize,
)]
#[serde(crate = "hitl::__private::serde")]
#[state(crate = "::hitl")]
pub struct Flow {
    /// Appended.
    #[state(reducer = append)]
    pub log: Vec<String>,
    /// Messages.
    #[state(reducer = messages)]
    pub messages: Vec<hitl::Message>,
    /// Last value.
    pub step: u32,
}

/// The answer to a large transfer.
#[derive(Debug, hitl::__private::serde::Deserialize, hitl::__private::schemars::JsonSchema)]
#[serde(crate = "hitl::__private::serde")]
#[schemars(crate = "hitl::__private::schemars")]
pub struct Approval {
    /// Whether it may go ahead.
    pub approved: bool,
}

/// A transfer over the limit.
#[derive(Debug, hitl::__private::serde::Serialize, Interrupt)]
#[serde(crate = "hitl::__private::serde")]
#[interrupt(crate = "::hitl", resume = Approval)]
pub struct LargeTransfer {
    /// How much.
    pub amount: f64,
}

/// The tools, their policies, a typed decision, and a state update.
pub fn setup() -> (hitl::ToolSet, hitl::PolicyMap, Decision, FlowUpdate) {
    (
        tools![crate = "::hitl"; read_file, delete_file],
        interrupt_on! { crate = "::hitl"; read_file: false, delete_file: [approve] },
        Decision::approve::<delete_file>(),
        FlowUpdate::default().step(2).log(vec!["a".into()]),
    )
}

#[cfg(test)]
mod tests {
    use hitl::Interrupt;

    use super::*;

    #[test]
    fn every_macro_works_through_the_crate_key() {
        let (set, policies, decision, update) = setup();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["read_file", "delete_file"]
        );
        assert!(policies.get("read_file").unwrap().is_none());
        assert!(policies.get("delete_file").unwrap().is_some());
        assert_eq!(decision.kind(), hitl::DecisionType::Approve);
        assert_eq!(update.step, Some(2));
        let schema = LargeTransfer::resume_schema().unwrap();
        assert_eq!(schema["properties"]["approved"]["type"], "boolean");
    }
}
