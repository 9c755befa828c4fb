use hitl_runtime::{tool, ToolError};

struct Account {
    id: u64,
}

/// Close an account.
#[tool]
async fn close_account(account: Account) -> Result<String, ToolError> {
    Ok(account.id.to_string())
}

fn main() {}
