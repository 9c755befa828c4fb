use hitl_runtime::tool;

struct Files;

impl Files {
    /// Delete a file.
    #[tool]
    fn delete_file(&self, path: String) -> String {
        path
    }
}

fn main() {}
