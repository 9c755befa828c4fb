use hitl_runtime::Interrupt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct Verdict {
    approved: bool,
}

fn deny() -> bool {
    false
}

/// Expires without a timeout answer, and asks for approvals.
#[derive(Serialize, Interrupt)]
#[interrupt(resume = Verdict, expires = "1d", reviewers = ["ops"], approvals = 2)]
struct LargeTransfer {
    amount: f64,
}

/// A timeout answer of the wrong type.
#[derive(Serialize, Interrupt)]
#[interrupt(resume = Verdict, expires = "30m", on_timeout = deny)]
struct Refund {
    amount: f64,
}

fn main() {}
