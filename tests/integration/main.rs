//! Integration tests: one binary, one module per topic.

mod common;
mod interrupts;
mod smoke;
