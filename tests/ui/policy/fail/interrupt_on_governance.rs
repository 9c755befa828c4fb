use hitl_runtime::{interrupt_on, tool, ToolError};

/// Pay someone.
#[tool]
async fn pay(amount: u64) -> Result<String, ToolError> {
    Ok(amount.to_string())
}

fn main() {
    let _ = interrupt_on! {
        pay: interrupt(allowed = [approve], on_timeout = reject, approvals = 2, quorum = 3),
    };
}
