use hitl_runtime::{tool, ToolError};

/// Pay someone.
#[tool(interrupt(allowed = [approve, edit], expires = "1h", on_timeout = edit))]
async fn pay(amount: u64) -> Result<String, ToolError> {
    Ok(amount.to_string())
}

fn main() {}
