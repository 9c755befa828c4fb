use hitl_runtime::testing::ScriptedReviewer;

#[derive(serde::Serialize)]
struct EmailArgs {
    to: String,
}

fn main() {
    let _ = ScriptedReviewer::new().edit(EmailArgs { to: "bob".into() });
}
