use hitl_runtime::tool;

/// Not a tool.
#[tool]
struct DeleteFile {
    path: String,
}

fn main() {}
