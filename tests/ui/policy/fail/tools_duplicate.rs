use hitl_runtime::{tool, tools, ToolError};

/// Read a file.
#[tool]
async fn read_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = tools![read_file, read_file];
}
