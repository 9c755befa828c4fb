use hitl_runtime::{tool, ToolError};
use serde::{Deserialize, Serialize};

// Every requirement but `JsonSchema`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recipient {
    email: String,
}

/// Send an email.
#[tool]
async fn send_email(to: Recipient) -> Result<String, ToolError> {
    Ok(to.email)
}

fn main() {}
