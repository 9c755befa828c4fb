//! Tools in a crate whose only dependency is `hitl-runtime`.

use hitl_runtime::{Decision, ToolError, interrupt_on, tool, tools};

/// Delete a file.
#[tool(interrupt(allowed = [approve, edit, reject], description = "Deleting {path}"))]
pub async fn delete_file(
    /// The path.
    path: String,
    recursive: Option<bool>,
) -> Result<String, ToolError> {
    Ok(format!("deleted {path} ({recursive:?})"))
}

/// Add numbers.
#[tool(name = "add")]
pub fn add_numbers(values: Vec<f64>) -> f64 {
    values.iter().sum()
}

/// The tools, their policies, and a typed decision.
pub fn setup() -> (hitl_runtime::ToolSet, hitl_runtime::PolicyMap, Decision) {
    (
        tools![delete_file, add_numbers],
        interrupt_on! { add_numbers: [approve] },
        Decision::edit::<delete_file>(DeleteFileArgs {
            path: "b".into(),
            recursive: None,
        }),
    )
}

#[cfg(test)]
mod tests {
    use hitl_runtime::Tool;

    use super::*;

    #[test]
    fn tools_work_without_serde_or_schemars_dependencies() {
        let (set, policies, decision) = setup();
        assert_eq!(set.names().collect::<Vec<_>>(), ["delete_file", "add"]);
        assert!(policies.get("add").is_some());
        assert_eq!(decision.kind(), hitl_runtime::DecisionType::Edit);
        assert_eq!(add_numbers::NAME, "add");
        assert!(delete_file::args_schema()["properties"]["path"].is_object());
    }
}
