use hitl_runtime::Interrupt;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Decision {
    approved: bool,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = Decision)]
struct LargeTransfer {
    amount: f64,
}

fn main() {}
