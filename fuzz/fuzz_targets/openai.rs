//! Any body an OpenAI-compatible server can send, streamed or not: an answer or a
//! `ModelError`, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hitl_runtime::__private::read_completion(data);
    let body = data.to_vec();
    let _ = common::runtime().block_on(hitl_runtime::__private::fold_sse(body));
});
