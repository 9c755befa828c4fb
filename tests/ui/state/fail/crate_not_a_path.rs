use hitl_runtime::State;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
#[state(crate = "not a path!")]
struct Flow {
    step: u32,
}

fn main() {}
