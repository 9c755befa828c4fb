use hitl_runtime::Interrupt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, JsonSchema)]
struct TransferDecision {
    approved: bool,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
struct LargeTransfer {
    amount: f64,
    to: String,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = String)]
struct Question<'a> {
    text: &'a str,
}

fn main() {
    let schema = <LargeTransfer as Interrupt>::resume_schema().unwrap();
    assert_eq!(schema["properties"]["approved"]["type"], "boolean");
    assert_eq!(<Question<'static> as Interrupt>::resume_schema().unwrap()["type"], "string");
    let _ = LargeTransfer { amount: 1.0, to: String::new() };
    let _ = Question { text: "?" };
}
