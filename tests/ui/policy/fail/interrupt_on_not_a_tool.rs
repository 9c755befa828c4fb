use hitl_runtime::interrupt_on;

struct DeleteFile;

fn main() {
    let _ = interrupt_on! {
        DeleteFile: true,
    };
}
