use hitl_runtime::State;
use serde::{Deserialize, Serialize};

fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reducer = add)]
    total: u64,
}

fn main() {}
