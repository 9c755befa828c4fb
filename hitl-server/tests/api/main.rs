//! The HTTP API, driven through the router: every endpoint, every error status, and
//! SSE event sequences checked against the reference server's recordings
//! (`reference/`, recorded from langgraph-api 0.16.7 with langgraph-sdk 0.4.14).

mod assistants;
mod auth;
mod common;
mod durable;
mod governance;
mod meta;
mod resume;
mod runs;
mod socket;
mod state;
mod streams;
mod threads;
