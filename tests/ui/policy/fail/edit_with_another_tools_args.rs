use hitl_runtime::{tool, Decision, ToolError};

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject]))]
async fn send_email(to: String) -> Result<String, ToolError> {
    Ok(to)
}

/// Draft an email.
#[tool(interrupt)]
async fn draft_email(to: String) -> Result<String, ToolError> {
    Ok(to)
}

fn main() {
    let _ = Decision::edit::<send_email>(DraftEmailArgs { to: "bob".into() });
}
