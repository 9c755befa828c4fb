use hitl_runtime::testing::ScriptedReviewer;
use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject]))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = ScriptedReviewer::new().approve::<delete_files>();
}
