use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject, approve]))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
