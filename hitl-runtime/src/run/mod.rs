//! Running graphs: compiling them, the run loop (a step machine, see `step`), inputs,
//! outputs, snapshots and streams.
//!
//! Files by job: `step` (the phases of a run and the loop), `tasks` (planning,
//! running and settling a superstep's tasks), `resume` (commands and resume
//! validation), `commit` (making checkpoints), `snapshot` (reading them as state
//! snapshots), `update` (`update_state`), `subgraph`, `compiled` (the public
//! `CompiledGraph` API), `cache` (the state cache).

mod cache;
mod commit;
mod compiled;
mod expire;
mod input;
mod io;
mod lease;
mod output;
mod resume;
mod snapshot;
mod step;
mod stream;
mod subgraph;
mod tasks;
#[cfg(test)]
mod tests;
mod update;

pub use compiled::{CompileBuilder, CompiledGraph};
pub use expire::{DueTimeouts, Expired};
pub use input::Input;
pub use output::{RunOutput, RunStatus, StateSnapshot, TaskInfo};
pub use stream::{RunStream, StreamEvent, TaskOutcome};
