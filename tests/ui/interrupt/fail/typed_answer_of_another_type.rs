use hitl_runtime::{Command, Interrupt, PendingInterrupt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema)]
struct TransferDecision {
    approved: bool,
}

#[derive(Serialize, Deserialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
struct LargeTransfer {
    amount: f64,
}

fn answer(pending: &PendingInterrupt) -> Command<hitl_runtime::AgentState> {
    let asked = pending.downcast::<LargeTransfer>().unwrap().unwrap();
    // The answer to a `LargeTransfer` is a `TransferDecision`, not a bool.
    Command::answers([asked.answer(true)])
}

fn main() {}
