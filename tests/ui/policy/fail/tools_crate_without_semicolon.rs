use hitl_runtime::{ToolError, tool, tools};

/// Read a file.
#[tool]
async fn read_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = tools![crate = "::hitl_runtime" read_file];
}
