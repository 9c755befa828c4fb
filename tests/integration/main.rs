//! Integration tests: one binary, one module per topic.

mod agent;
mod agent_per_call;
mod common;
mod conformance;
mod crash;
mod gate;
mod governance;
mod graph;
mod interrupts;
mod openai;
mod pg;
mod server_crash;
mod smoke;
mod state_api;
mod storage;
mod streaming;
mod tools;
mod typed;
