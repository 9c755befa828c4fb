use hitl_runtime::State;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reduce = append)]
    log: Vec<String>,
}

fn main() {}
