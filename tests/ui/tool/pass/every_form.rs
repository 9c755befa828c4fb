//! Every supported form of `#[tool]`.

use hitl_runtime::{tool, DecisionType, Tool, ToolContext, ToolError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Read a file.
#[tool]
async fn read_file(
    /// Path relative to the workspace root.
    path: String,
) -> Result<String, ToolError> {
    Ok(format!("contents of {path}"))
}

/// Count words; sync, infallible, structured output.
#[tool]
fn count_words(text: String) -> Vec<usize> {
    vec![text.split_whitespace().count()]
}

/// A tool with no parameters and no output.
#[tool]
async fn ping() {}

#[tool(name = "send-email", description = "Send an email to someone.")]
async fn send_email(to: String, body: Option<String>) -> Result<String, std::io::Error> {
    Ok(format!("sent to {to}: {}", body.unwrap_or_default()))
}

/// Delete a file; every decision allowed.
#[tool(interrupt)]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn describe_transfer(args: &TransferArgs) -> String {
    format!("Transfer ${} to {}", args.amount, args.to)
}

fn over_limit(args: &TransferArgs) -> bool {
    args.amount > 1000.0
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
enum Currency {
    Eur,
    Usd,
}

/// Transfer money.
#[tool(interrupt(allowed = [approve, reject], description = describe_transfer, when = over_limit))]
async fn transfer(cx: ToolContext, amount: f64, to: String, currency: Currency) -> Result<String, ToolError> {
    Ok(format!("{} {amount} {currency:?} to {to}", cx.tool_call_id()))
}

/// Archive a file.
#[tool(interrupt(allowed = [approve, edit, reject, respond], description = "Archiving {path} ({{with braces}})"))]
fn archive(path: String, _cx: ToolContext) -> String {
    path
}

pub mod nested {
    use hitl_runtime::tool;

    /// A public tool in a module.
    #[tool(interrupt(allowed = [respond]))]
    pub async fn ask_user(question: String) -> String {
        question
    }
}

fn main() {
    assert_eq!(read_file::NAME, "read_file");
    assert_eq!(send_email::NAME, "send-email");
    assert_eq!(send_email::description(), "Send an email to someone.");
    assert_eq!(count_words::description(), "Count words; sync, infallible, structured output.");
    assert!(read_file::policy().is_none());
    assert_eq!(delete_file::policy().unwrap().allowed().iter().count(), 4);
    let p = transfer::policy().unwrap();
    assert!(p.allowed().contains(DecisionType::Reject));
    assert!(!p.allowed().contains(DecisionType::Edit));
    let args = serde_json::json!({"amount": 5000.0, "to": "acme", "currency": "Eur"});
    assert!(p.gates(&args));
    assert_eq!(p.describe(&args).as_deref(), Some("Transfer $5000 to acme"));
    assert!(!p.gates(&serde_json::json!({"amount": 5.0, "to": "acme", "currency": "Eur"})));
    let a = archive::policy().unwrap();
    assert_eq!(
        a.describe(&serde_json::json!({"path": "x.txt"})).as_deref(),
        Some("Archiving x.txt ({with braces})")
    );
    assert!(nested::ask_user::policy().unwrap().allowed().contains(DecisionType::Respond));
    let _ = (ping {}, nested::AskUserArgs { question: String::new() });
    // The functions are still plain functions.
    assert_eq!(count_words("a b c".into()), vec![3]);
}
