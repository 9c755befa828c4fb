use hitl_runtime::{tool, ToolError};

/// Delete a file.
#[tool(nmae = "x", interrupt(allowed = [approve, maybe], description = "Deleting {pth}"))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

fn main() {
    // The tool type still exists, so this line adds no error of its own.
    let _ = hitl_runtime::tools![delete_file];
}
