//! Integration tests: one binary, one module per topic.

mod common;
mod graph;
mod interrupts;
mod smoke;
mod state_api;
mod storage;
mod streaming;
