use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject], description = "Deleting {pth} cannot be undone"))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
