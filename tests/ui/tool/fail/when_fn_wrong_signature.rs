use hitl_runtime::{tool, ToolError};

fn outside_tmp(args: &DeleteFileArgs) -> String {
    args.path.clone()
}

/// Delete a file.
#[tool(interrupt(when = outside_tmp))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {}
