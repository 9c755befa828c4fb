//! Errors, one enum per domain. Each message says what went wrong and what to do.

use std::error::Error as StdError;
use std::fmt;

use crate::ids::{CheckpointId, InterruptId, TaskId};

/// A boxed error from a backend or from user code.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A graph that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Nothing leads out of `START`.
    #[error(
        "the graph has no entry point: add an edge from START, e.g. `g.add_edge(START, first)`"
    )]
    NoEntry,
    /// A node no path from `START` reaches.
    #[error(
        "node `{node}` is unreachable: no path from START leads to it; add an edge to it, \
         list it in `add_conditional_edges_to`, or declare it with `add_goto_targets` on \
         the node that sends a `Command::goto` to it"
    )]
    Unreachable {
        /// The node.
        node: String,
    },
    /// A node with no way out.
    #[error(
        "node `{node}` has no outgoing edge: add `g.add_edge({node}, END)` if the run ends \
         there, or an edge to the next node"
    )]
    DeadEnd {
        /// The node.
        node: String,
    },
    /// A handle that belongs to another graph.
    #[error(
        "node handle {node} belongs to another graph; handles are only valid in the graph that \
         created them (look one up by name with `CompiledGraph::node`)"
    )]
    ForeignNode {
        /// The node's name in its own graph.
        node: String,
    },
    /// Two nodes with one name.
    #[error("a node named `{name}` already exists; node names must be unique")]
    DuplicateNode {
        /// The name.
        name: String,
    },
    /// A name the runtime reserves or cannot store.
    #[error(
        "`{name}` is not a valid node name: names must be non-empty, must not start with `__` and must not contain `:` or `|`"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two tools with one name in an agent.
    #[error(
        "two tools are named `{name}`; tool names must be unique in an agent (rename one with `#[tool(name = \"...\")]`)"
    )]
    DuplicateTool {
        /// The name.
        name: String,
    },
    /// Two middleware with one name in an agent.
    #[error("two middleware are named `{name}`; remove the duplicate middleware instance")]
    DuplicateMiddleware {
        /// The name.
        name: String,
    },
    /// A middleware rejected the agent's configuration.
    #[error("middleware `{name}`: {message}")]
    Middleware {
        /// The middleware.
        name: String,
        /// Why.
        message: String,
    },
    /// Tools declare a review policy, but no middleware of the agent enforces it.
    #[error(
        "{} declare{} a review policy (`#[tool(interrupt(..))]`), but the agent has no review \
         middleware, so {} would run unreviewed: add `.middleware(HumanInTheLoop::from_tools())`, \
         or remove the policy",
        known_list(tools),
        if tools.len() == 1 { "s" } else { "" },
        if tools.len() == 1 { "it" } else { "they" }
    )]
    UnreviewedTools {
        /// The tools with a policy.
        tools: Vec<String>,
    },
    /// A breakpoint or setting names a node the graph does not have.
    #[error(
        "the graph has no node named `{name}`; its nodes are: {}",
        known_list(known)
    )]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// The graph's node names.
        known: Vec<String>,
    },
}

fn known_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A write that the reducers reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReducerError {
    /// Two writes to a last-value channel in one superstep.
    #[error(
        "channel `{channel}` was written by `{first}` and `{second}` in the same superstep; \
         a last-value channel takes one write per step: give it a reducer \
         (`#[state(reducer = append)]` or a function) or write it from one node"
    )]
    ConcurrentWrite {
        /// The channel.
        channel: &'static str,
        /// The first writer.
        first: String,
        /// The second writer.
        second: String,
    },
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Another writer moved the thread's head first (compare-and-set failed).
    #[error(
        "thread `{thread}`{} moved on while this run was writing: expected head {}, found {}; \
         another run or worker resumed it first. Reload the state and retry if still needed",
        ns_suffix(ns),
        opt_id(expected),
        opt_id(actual)
    )]
    Conflict {
        /// The thread.
        thread: String,
        /// The checkpoint namespace ("" at the root).
        ns: String,
        /// The head this writer expected.
        expected: Option<CheckpointId>,
        /// The head found.
        actual: Option<CheckpointId>,
    },
    /// Another writer stored a resume answer in the same slot first.
    #[error(
        "another resume of thread `{thread}` stored its answer first (task {task}, slot {idx}); \
         reload the state to see what is still pending"
    )]
    WriteConflict {
        /// The thread.
        thread: String,
        /// The task the answer belongs to.
        task: TaskId,
        /// The slot.
        idx: i32,
    },
    /// A stored value could not be decoded. Never replaced by a default.
    #[error("corrupt checkpoint data in thread `{thread}` ({what}): {source}")]
    Decode {
        /// The thread.
        thread: String,
        /// What was being decoded.
        what: String,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// Stored data is inconsistent (a blob a checkpoint needs is missing, ...).
    #[error("corrupt checkpoint data in thread `{thread}`: {message}")]
    Corrupt {
        /// The thread.
        thread: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint id that does not exist in the thread.
    #[error("thread `{thread}` has no checkpoint {checkpoint}")]
    NotFound {
        /// The thread.
        thread: String,
        /// The checkpoint asked for.
        checkpoint: CheckpointId,
    },
    /// The database file cannot hold threads: it is empty (truncated?) or it is not an
    /// SQLite database.
    #[error("cannot use `{path}` as a checkpoint database: {reason}")]
    Unusable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The database schema is newer than this library.
    #[error(
        "the checkpoint database is at schema version {found}, newer than this library's {supported}; upgrade hitl-runtime"
    )]
    SchemaTooNew {
        /// The stored version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A thread's decision records do not verify: one was changed, removed or
    /// reordered in the store.
    #[error(transparent)]
    Tampered(#[from] crate::checkpoint::ChainError),
    /// An error from the storage backend.
    #[error("checkpoint storage failed: {0}")]
    Backend(#[source] BoxError),
}

impl CheckpointError {
    /// The error for stored JSON that does not decode: `what` in `thread`. Nothing is
    /// allocated unless it is called (it sits on every decode of the run loop).
    pub(crate) fn decoding<'a, W: Into<String> + 'a>(
        thread: &'a str,
        what: W,
    ) -> impl FnOnce(serde_json::Error) -> CheckpointError + 'a {
        move |source| CheckpointError::Decode {
            thread: thread.to_owned(),
            what: what.into(),
            source,
        }
    }

    /// [`decoding`](Self::decoding), with the description made only on an error.
    pub(crate) fn decoding_with<'a>(
        thread: &'a str,
        what: impl FnOnce() -> String + 'a,
    ) -> impl FnOnce(serde_json::Error) -> CheckpointError + 'a {
        move |source| CheckpointError::Decode {
            thread: thread.to_owned(),
            what: what(),
            source,
        }
    }

    /// The error for stored data that is inconsistent.
    pub(crate) fn corrupt(thread: &str, message: impl Into<String>) -> Self {
        CheckpointError::Corrupt {
            thread: thread.to_owned(),
            message: message.into(),
        }
    }
}

fn ns_suffix(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!(" (namespace `{ns}`)")
    }
}

fn opt_id(id: &Option<CheckpointId>) -> String {
    match id {
        Some(id) => id.to_string(),
        None => "none".into(),
    }
}

/// A resume that cannot be accepted. Nothing was stored: the interrupts are still
/// pending and a correct resume succeeds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The graph was compiled without a checkpointer.
    #[error("cannot resume without a checkpointer: compile the graph with `.checkpointer(..)`")]
    NoCheckpointer,
    /// The thread has no checkpoint.
    #[error("thread `{thread}` does not exist: nothing to resume. Start it with an input first")]
    UnknownThread {
        /// The thread.
        thread: String,
    },
    /// The thread has no pending interrupt.
    #[error(
        "thread `{thread}` has no pending interrupt: it finished, or is stopped at a static \
         breakpoint (continue it with `invoke(None, ..)`)"
    )]
    NothingPending {
        /// The thread.
        thread: String,
    },
    /// A single value while several interrupts are pending.
    #[error(
        "{} interrupts are pending ({}); answer them by id with `Command::resume_by_id`",
        pending.len(), join_ids(pending)
    )]
    Ambiguous {
        /// The pending interrupt ids.
        pending: Vec<InterruptId>,
    },
    /// `Command::resume_by_id` with no entries.
    #[error(
        "`Command::resume_by_id` was given no answers; pending interrupts: {}",
        join_ids(pending)
    )]
    EmptyMap {
        /// The pending interrupt ids.
        pending: Vec<InterruptId>,
    },
    /// An id that is not pending.
    #[error(
        "interrupt {id} is not pending on this thread; pending interrupts: {}",
        join_ids(pending)
    )]
    UnknownInterrupt {
        /// The id given.
        id: InterruptId,
        /// The pending interrupt ids.
        pending: Vec<InterruptId>,
    },
    /// An interrupt that already has an answer waiting to be used.
    #[error(
        "interrupt {id} was already answered; continue the run with `invoke(None, ..)` or answer the other pending interrupts"
    )]
    AlreadyAnswered {
        /// The interrupt.
        id: InterruptId,
    },
    /// The answer does not match what the interrupt accepts.
    #[error("invalid answer for interrupt {id}: {}", problems.join("; "))]
    InvalidValue {
        /// The interrupt.
        id: InterruptId,
        /// What is wrong, one entry per problem.
        problems: Vec<String>,
    },
    /// The resume targets a checkpoint that is not the thread's head.
    #[error(
        "cannot resume at checkpoint {requested}: the thread's head is {head}. Resume without `at_checkpoint`, or time-travel with `invoke(None, ..)` first"
    )]
    NotAtHead {
        /// The checkpoint asked for.
        requested: CheckpointId,
        /// The head.
        head: CheckpointId,
    },
    /// A person answered an interrupt after its deadline. Nothing was stored; the
    /// timeout answer applies ([`crate::CompiledGraph::expire_due`]).
    #[error(
        "interrupt {id} expired at {} (ms since the epoch); answers are no longer accepted{}",
        expired_at,
        if *has_timeout_answer { "; its timeout answer is applied by `expire_due`" } else { "" }
    )]
    Expired {
        /// The interrupt.
        id: InterruptId,
        /// When it expired (ms since the Unix epoch).
        expired_at: u64,
        /// Whether it declares an answer for the timeout.
        has_timeout_answer: bool,
    },
    /// The reviewer does not hold the roles the interrupt asks for (or none was
    /// given). Nothing was stored.
    #[error(
        "interrupt {id} may be answered only by a reviewer with the role {needs}; {}",
        match reviewer {
            Some(r) => format!("`{r}` does not have it"),
            None => "say who answers with `Command::by(Reviewer::new(..).role(..))`".to_owned(),
        }
    )]
    Unauthorized {
        /// The interrupt.
        id: InterruptId,
        /// The roles needed (`finance; ops or admin`), or what else is needed.
        needs: String,
        /// Who tried, if anyone said.
        reviewer: Option<String>,
    },
    /// What the interrupt reviews changed since it was raised (a deployment changed
    /// the tool's policy or argument schema). Nothing was stored.
    #[error(
        "interrupt {id} reviews a call of `{tool}`, whose policy or argument schema changed since the review was raised ({raised} then, {}); register a migration that accepts the pending call (`HumanInTheLoop::on_policy_change`) or start a new run",
        current.as_deref().unwrap_or("no longer reviewed now")
    )]
    PolicyChanged {
        /// The interrupt.
        id: InterruptId,
        /// The tool.
        tool: String,
        /// Its digest when the review was raised.
        raised: String,
        /// Its digest now.
        current: Option<String>,
    },
    /// An interrupt kind with no validator in this graph.
    #[error(
        "interrupt {id} was raised by `{kind}`, which this graph does not know; resume it with the graph (or agent middleware) that raised it"
    )]
    UnknownKind {
        /// The interrupt.
        id: InterruptId,
        /// Its kind.
        kind: String,
    },
}

fn join_ids(ids: &[InterruptId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A checkpointer is configured but the run config names no thread.
    #[error(
        "this graph has a checkpointer, so every run needs a thread: use `RunConfig::thread(\"id\")`"
    )]
    MissingThreadId,
    /// The state API needs a checkpointer.
    #[error("`{operation}` needs a checkpointer: compile the graph with `.checkpointer(..)`")]
    NoCheckpointer {
        /// What was asked.
        operation: &'static str,
    },
    /// `invoke(None)` or the state API on a thread with no checkpoint.
    #[error("thread `{thread}` does not exist; start it with an input")]
    UnknownThread {
        /// The thread.
        thread: String,
    },
    /// The resume was rejected; nothing was stored.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// Storage failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A node returned an error (stored; `invoke(None)` re-runs only that task).
    #[error("node `{node}` failed: {message}")]
    NodeFailed {
        /// The node.
        node: String,
        /// The task.
        task: TaskId,
        /// The error's message.
        message: String,
        /// The error, when it happened in this process.
        #[source]
        source: Option<BoxError>,
    },
    /// An update the reducers reject.
    #[error(transparent)]
    Reducer(#[from] ReducerError),
    /// An update given to the run (input, a command, `update_state`) that does not
    /// serialize to JSON.
    #[error("the update from `{writer}` does not serialize to JSON: {source}")]
    InvalidUpdate {
        /// Who wrote it: `input`, `command` or `update_state`.
        writer: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An update given to the run nests deeper than [`crate::MAX_JSON_DEPTH`]: stored, it
    /// could not be read back.
    #[error(
        "the update from `{writer}` nests {depth} levels deep; at most {} are accepted, so \
         that everything stored can be read back",
        crate::MAX_JSON_DEPTH
    )]
    TooDeep {
        /// Who wrote it: `input`, `command` or `update_state`.
        writer: String,
        /// How deep it nests.
        depth: usize,
    },
    /// User code outside a node panicked: a conditional edge's router, a reducer, a
    /// state's `Serialize` impl. Nothing of the step was stored; the thread is as it was.
    #[error("{place} panicked: {message}")]
    Panicked {
        /// What panicked, e.g. "the conditional edge after `review`".
        place: String,
        /// The panic's message.
        message: String,
    },
    /// Too many supersteps in one run.
    #[error(
        "the run took more than {limit} supersteps without finishing; raise it with `RunConfig::recursion_limit` if the graph really needs more, or check for a cycle that never reaches END"
    )]
    RecursionLimit {
        /// The limit.
        limit: usize,
    },
    /// The run's cancellation token fired.
    #[error(
        "the run was cancelled; completed tasks kept their writes, `invoke(None, ..)` continues it"
    )]
    Cancelled,
    /// A route to a node the graph does not have, or did not declare.
    #[error("node `{from}` routed to `{to}`, {why}")]
    InvalidRoute {
        /// The routing node.
        from: String,
        /// The target.
        to: String,
        /// Why it is invalid.
        why: &'static str,
    },
    /// Another runner is running the thread (it holds the thread's run lease).
    #[error(
        "thread `{thread}` is being run by another runner ({holder}); wait for that run to \
         finish and try again (a crashed runner's lease expires by itself)"
    )]
    ThreadBusy {
        /// The thread.
        thread: String,
        /// Who holds its lease.
        holder: String,
    },
    /// The run could not renew its lease in time and stopped; another runner may have
    /// taken the thread over.
    #[error(
        "the run lost the lease of thread `{thread}` (it could not renew it in time) and \
         stopped; what it stored is kept, reload the thread before continuing it"
    )]
    LeaseLost {
        /// The thread.
        thread: String,
    },
    /// A `Command` with no resume, update or goto.
    #[error(
        "the command is empty: give it a resume value, an update or a goto (to just continue a thread, use `invoke(None, ..)`)"
    )]
    EmptyCommand,
    /// A node named in a run setting does not exist.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Runs user code that is not a node (a router, a reducer, a `Serialize` impl) and
/// turns a panic into [`RunError::Panicked`].
pub(crate) fn catching<T>(
    place: impl FnOnce() -> String,
    f: impl FnOnce() -> T,
) -> Result<T, RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| RunError::Panicked {
        place: place(),
        message: panic_message(&*panic),
    })
}

/// An error returned by a node.
///
/// Any `std::error::Error` converts into it with `?`; so does the marker returned by
/// [`crate::NodeContext::interrupt`] when the task must pause. Like `anyhow::Error`, it
/// does not itself implement `std::error::Error`, so that blanket conversion is possible.
pub struct NodeError {
    pub(crate) inner: NodeErrorKind,
}

pub(crate) enum NodeErrorKind {
    Interrupted,
    Timeout(std::time::Duration),
    Failed(BoxError),
}

impl NodeError {
    /// An error with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        NodeError {
            inner: NodeErrorKind::Failed(message.to_string().into()),
        }
    }

    /// Whether this error is the pause signal of an interrupt.
    pub fn is_interrupt(&self) -> bool {
        matches!(self.inner, NodeErrorKind::Interrupted)
    }

    pub(crate) fn timeout(after: std::time::Duration) -> Self {
        NodeError {
            inner: NodeErrorKind::Timeout(after),
        }
    }

    pub(crate) fn into_source(self) -> Option<BoxError> {
        match self.inner {
            NodeErrorKind::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            NodeErrorKind::Interrupted => f.write_str("interrupted: waiting for a resume value"),
            NodeErrorKind::Timeout(d) => write!(f, "timed out after {d:?}"),
            NodeErrorKind::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            NodeErrorKind::Interrupted => f.write_str("NodeError::Interrupted"),
            NodeErrorKind::Timeout(d) => write!(f, "NodeError::Timeout({d:?})"),
            NodeErrorKind::Failed(e) => f.debug_tuple("NodeError").field(e).finish(),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for NodeError {
    fn from(error: E) -> Self {
        let boxed: BoxError = Box::new(error);
        match boxed.downcast::<Interrupted>() {
            Ok(_) => NodeError {
                inner: NodeErrorKind::Interrupted,
            },
            Err(other) => NodeError {
                inner: NodeErrorKind::Failed(other),
            },
        }
    }
}

/// Returned by `interrupt()` when no answer is stored yet: the task must stop.
///
/// Propagate it with `?`. If your code swallows it, the task is interrupted anyway: the
/// context remembers the interrupt and the runtime discards the task's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted: waiting for a resume value")]
pub struct Interrupted;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_keeps_interrupts_recognisable() {
        fn f() -> Result<(), NodeError> {
            Err(Interrupted)?;
            Ok(())
        }
        assert!(f().unwrap_err().is_interrupt());
        let io: NodeError = std::io::Error::other("disk").into();
        assert!(!io.is_interrupt());
        assert_eq!(io.to_string(), "disk");
    }

    #[test]
    fn resume_errors_name_the_fix() {
        let id: InterruptId = "0000000000000000000000000000000a".parse().unwrap();
        let e = ResumeError::Ambiguous {
            pending: vec![id, id],
        };
        assert_eq!(
            e.to_string(),
            "2 interrupts are pending (0000000000000000000000000000000a, \
             0000000000000000000000000000000a); answer them by id with `Command::resume_by_id`"
        );
    }
}
