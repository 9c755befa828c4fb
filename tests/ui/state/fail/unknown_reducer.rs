use hitl_runtime::State;
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reducer = apend)]
    log: Vec<String>,
}

fn main() {}
