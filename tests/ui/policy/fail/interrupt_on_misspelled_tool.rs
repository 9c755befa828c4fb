use hitl_runtime::{interrupt_on, tool, ToolError};

/// Delete a file.
#[tool]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

/// Send an email.
#[tool]
async fn send_email(to: String) -> Result<String, ToolError> {
    Ok(to)
}

fn main() {
    let _ = interrupt_on! {
        delete_file: [approve, reject],
        send_emial: true,
    };
}
