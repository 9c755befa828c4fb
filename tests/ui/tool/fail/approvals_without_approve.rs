use hitl_runtime::{tool, ToolError};

/// Pay someone.
#[tool(interrupt(allowed = [reject, respond], approvals = 2))]
async fn pay(amount: u64) -> Result<String, ToolError> {
    Ok(amount.to_string())
}

fn main() {}
