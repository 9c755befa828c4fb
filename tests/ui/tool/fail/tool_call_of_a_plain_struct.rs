use hitl_runtime::ToolCall;

#[derive(serde::Serialize)]
struct EmailArgs {
    to: String,
}

fn main() {
    let _ = ToolCall::of(EmailArgs { to: "bob".into() }, "c1");
}
