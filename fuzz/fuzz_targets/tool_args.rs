//! Any arguments a model or a reviewer can give a tool: decoded, or refused with a
//! message, never a panic or a stack overflow.
#![no_main]

#[path = "common.rs"]
mod common;

use hitl_runtime::{DynTool, ToolSet, tools};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(args) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let set: ToolSet = tools![common::transfer, common::read_file];
    for tool in set.iter() {
        let tool: &dyn DynTool = &**tool;
        let _ = tool.check_args(&args);
    }
    let _ = hitl_runtime::json_depth(&args);
});
