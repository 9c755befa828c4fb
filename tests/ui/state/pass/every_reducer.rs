use hitl_runtime::{Message, State};
use serde::{Deserialize, Serialize};

fn max(current: &mut u32, candidate: u32) {
    *current = (*current).max(candidate);
}

mod reducers {
    pub fn concat(current: &mut String, more: String) {
        current.push_str(&more);
    }
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Flow {
    #[state(reducer = append)]
    log: Vec<String>,
    #[state(reducer = messages)]
    messages: Vec<Message>,
    #[state(reducer = max)]
    high: u32,
    #[state(reducer = reducers::concat)]
    text: String,
    #[state(reducer = last_value)]
    explicit: bool,
    step: u32,
}

fn main() {
    let u = FlowUpdate::default()
        .log(vec!["a".to_string()])
        .messages(vec![Message::user("hi")])
        .high(3)
        .text("x")
        .explicit(true)
        .step(1);
    assert_eq!(u.high, Some(3));
    assert_eq!(<Flow as State>::channels().len(), 6);
}
