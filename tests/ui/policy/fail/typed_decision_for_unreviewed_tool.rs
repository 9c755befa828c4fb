use hitl_runtime::{tool, Decision, ToolError};

/// Read a file.
#[tool]
async fn read_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = Decision::approve::<read_file>();
}
