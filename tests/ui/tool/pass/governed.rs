use hitl_runtime::{interrupt_on, tool, Interrupt, ToolError};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pay someone.
#[tool(interrupt(
    allowed = [approve, reject],
    description = "Pay {amount}",
    expires = "1h30m",
    on_timeout = reject("No answer"),
    reviewers = ["finance", "ops"],
    approvals = 2,
))]
async fn pay(amount: u64) -> Result<String, ToolError> {
    Ok(amount.to_string())
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Verdict {
    approved: bool,
}

fn deny() -> Verdict {
    Verdict { approved: false }
}

/// A large transfer, answered by ops within a day, else denied.
#[derive(Serialize, Interrupt)]
#[interrupt(resume = Verdict, expires = "1d", on_timeout = deny, reviewers = ["ops"])]
struct LargeTransfer {
    amount: f64,
}

fn main() {
    let policy = <pay as hitl_runtime::Tool>::policy().unwrap();
    assert_eq!(policy.required_approvals(), 2);
    assert_eq!(policy.expiry(), Some(std::time::Duration::from_secs(5400)));
    assert_eq!(policy.reviewer_roles(), ["finance", "ops"]);
    assert!(policy.check().is_ok());
    let _ = interrupt_on! {
        pay: interrupt(allowed = [approve, respond], expires = "2h", on_timeout = respond("later"), reviewers = ["ops"]),
    };
    let spec = LargeTransfer { amount: 1.0 }.governance();
    assert_eq!(spec.expires, Some(std::time::Duration::from_secs(86_400)));
}
