use hitl_runtime::{tool, ToolError};

#[tool]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
