use hitl_runtime::{tool, ToolError};

fn describe(path: &str) -> String {
    format!("Deleting {path}")
}

/// Delete a file.
#[tool(interrupt(description = describe))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
