use hitl_runtime::Interrupt;
use serde::Serialize;

#[derive(Serialize, Interrupt)]
struct LargeTransfer {
    amount: f64,
}

fn main() {}
