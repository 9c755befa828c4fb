use hitl_runtime::{tool, Decision, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject]))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = Decision::edit::<delete_file>(DeleteFileArgs { path: "other.txt".into() });
}
