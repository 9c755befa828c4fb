use hitl_runtime::State;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reducer = append)]
    count: u64,
}

fn main() {}
