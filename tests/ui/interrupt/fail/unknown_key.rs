use hitl_runtime::Interrupt;
use serde::Serialize;

#[derive(Serialize, Interrupt)]
#[interrupt(answer = bool)]
struct LargeTransfer {
    amount: f64,
}

fn main() {}
