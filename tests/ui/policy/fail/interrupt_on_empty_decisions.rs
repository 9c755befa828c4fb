use hitl_runtime::{interrupt_on, tool, ToolError};

/// Delete a file.
#[tool]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    let _ = interrupt_on! {
        delete_file: [],
    };
}
