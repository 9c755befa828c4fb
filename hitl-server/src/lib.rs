//! LangGraph Server's HTTP API over hitl graphs, so the official `langgraph-sdk`
//! (Python and JS), Agent Chat UI and Agent Inbox talk to Rust agents unchanged.
//!
//! ```no_run
//! # async fn run(agent: hitl_runtime::agent::Agent) -> Result<(), Box<dyn std::error::Error>> {
//! use hitl_server::{BearerTokens, Server, Store};
//!
//! let server = Server::builder()
//!     .graph("agent", agent)                          // any CompiledGraph<S>
//!     .store(Store::sqlite("hitl.db"))                // threads and runs
//!     .auth(BearerTokens::from_file("tokens.json")?)  // optional: open without it
//!     .build()?;
//! server.serve("127.0.0.1:2024").await?;
//! # Ok(()) }
//! ```
//!
//! - **Graphs** of any state type sit behind [`JsonGraph`] (JSON in, JSON out). Each
//!   has a default assistant whose id is [`assistant_id`]`(graph_id)`, LangGraph's
//!   `uuid5`; runs may also name the graph itself.
//! - **Threads** are records in the [`Store`] (metadata, status); their state stays
//!   in the graph's checkpointer. A thread that ran has `graph_id` and
//!   `assistant_id` in its metadata.
//! - **Runs** are records too (`pending`, `running`, `success`, `error`,
//!   `interrupted`): a run that paused at an interrupt is `success` and its thread is
//!   `interrupted`; `interrupted` runs were cancelled. Pending runs wait in a
//!   [`RunQueue`]; `multitask_strategy` is `reject` (409), `enqueue` (the default),
//!   `interrupt` or `rollback`.
//! - **Streams** are SSE with LangGraph's event names (`metadata` first, then
//!   `values`, `updates`, `messages` for `messages-tuple`, `custom`, `tasks`,
//!   `checkpoints`, `debug`; `error` if the run fails; no `end` event: the stream
//!   closes once the run is recorded as ended). `stream_resumable` adds event ids
//!   and `Last-Event-ID` replays.
//!
//! - **Reviewers** answer as who they are: a resume is decided as the caller's
//!   [`Identity`] (its roles are checked against governed reviews, 403 without them,
//!   and it is written in the decision records, served at
//!   `GET /threads/{id}/decisions` with the verification of their chain). Expired
//!   reviews get their declared timeout answers from the server itself, through a
//!   recorded run ([`ServerBuilder::expire_every`]).
//! - **The reviewer inbox** is a web page at `/inbox`: what waits for the signed-in
//!   reviewer, answered in forms generated from the review policies and schemas (HTML,
//!   CSS and JavaScript embedded in the binary).
//!
//! # Stricter than LangGraph Server
//!
//! A resume is validated by the runtime before anything is stored: a malformed one
//! is **422** with the reason in `detail`, no run is recorded and the thread stays
//! `interrupted`; resuming a thread with nothing pending, or whose interrupt another
//! resume answered first, is **409**; a resume cannot wait in the queue behind
//! another run (409), because it answers the interrupts pending now. So of two
//! concurrent resumes exactly one runs.
//!
//! # Errors
//!
//! Every error is `{"detail": "..."}`: 404 unknown thread, run or assistant; 422
//! malformed ids, bodies and resumes; 409 conflicts (busy thread, thread exists,
//! nothing to resume); 401/403 from the [`Authenticator`]. A run that fails still
//! answers 200: an `error` SSE event, or `{"__error__": ..}` from `wait` and `join`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod auth;
mod error;
mod graph;
mod inbox;
mod live;
mod runs;
mod server;
mod store;
mod time;
mod wire;

pub use auth::{AuthConfigError, AuthError, Authenticator, BearerTokens, Identity};
pub use error::{BuildError, ServeError, StoreError};
pub use graph::{
    CallError, JsonCommand, JsonEvent, JsonGraph, JsonInput, JsonResume, JsonRunOptions,
    JsonRunStream, JsonSnapshot, NodeSelection,
};
pub use server::{Listen, Server, ServerBuilder, assistant_id};
pub use store::{
    Admission, IfBusy, IfExists, LocalQueue, MultitaskStrategy, Recovery, RunQueue, RunRecord,
    RunStatus, RunStore, SqliteRunStore, Store, ThreadPage, ThreadQuery, ThreadRecord, ThreadSort,
    ThreadStatus, ThreadUpdate,
};
#[cfg(feature = "postgres")]
pub use store::{PostgresQueue, PostgresRunStore, PostgresStoreBuilder};
