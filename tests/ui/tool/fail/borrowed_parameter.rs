use hitl_runtime::tool;

/// Echo.
#[tool]
fn echo(text: &str) -> String {
    text.to_owned()
}

fn main() {}
