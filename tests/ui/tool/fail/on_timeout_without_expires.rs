use hitl_runtime::{tool, ToolError};

/// Pay someone.
#[tool(interrupt(allowed = [approve, reject], on_timeout = reject("too late")))]
async fn pay(amount: u64) -> Result<String, ToolError> {
    Ok(amount.to_string())
}

fn main() {}
