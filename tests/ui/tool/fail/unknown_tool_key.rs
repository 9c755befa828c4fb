use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(nmae = "remove_file")]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
