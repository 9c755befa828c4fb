use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = []))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
