//! Running graphs: inputs, commands, the node context, outputs, streams and the
//! superstep executor.

mod command;
mod config;
mod context;
mod executor;
mod output;
pub(crate) mod pending;
mod stream;

pub use command::{Command, Input};
pub use config::RunConfig;
pub use context::{NodeContext, StreamWriter};
pub use output::{RunOutput, RunStatus, StateSnapshot, TaskInfo};
pub use stream::{RunStream, StreamEvent, StreamMode, StreamModes, TaskOutcome};

pub(crate) use executor::{execute, run_subgraph, snapshot_from_stored, update_state};
pub(crate) use stream::Sink;
