use hitl_runtime::{START, State, StateGraph};
use serde::{Deserialize, Serialize};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    step: u32,
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Other {
    step: u32,
}

fn main() {
    let mut other = StateGraph::<Other>::new();
    let foreign = other.add_node("x", |_, _| async { Ok(()) });
    let mut g = StateGraph::<Flow>::new();
    g.add_edge(START, foreign);
}
