//! The checkpointer conformance suite, run against every backend.

mod memory {
    hitl_runtime::checkpointer_conformance!(hitl_runtime::checkpoint::conformance::MemoryHarness);
}
