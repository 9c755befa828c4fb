//! The superstep executor.
//!
//! A run starts from a checkpoint (new input writes one; a resume or `invoke(None)`
//! continues the head; time travel forks an older one) and repeats:
//!
//! 1. **plan**: the tasks of the checkpoint (`next`, plus a `Command`'s gotos), each
//!    with a deterministic id; tasks whose result is already stored are not run again;
//! 2. **run**: the other tasks run concurrently; each stores its result, error or
//!    interrupt as a pending write the moment it finishes;
//! 3. **stop** on an error (re-raised) or interrupts (returned together);
//! 4. **barrier**: apply the updates through the reducers in task order, route, and
//!    write the next checkpoint with compare-and-set on the head.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use serde_json::value::RawValue;

use super::command::{Command, Input, Resume};
use super::config::RunConfig;
use super::context::{ContextEvent, ContextSink, NodeContext, RunShared, TaskShared};
use super::output::{RunOutput, RunStatus, StateSnapshot, TaskInfo};
use super::pending::{self, Collected, CommandPayload, ErrorPayload, ResultPayload, ResumePayload};
use super::stream::{Sink, StreamEvent, StreamMode, StreamModes, TaskOutcome};
use crate::checkpoint::{
    Checkpoint, CheckpointSource, CheckpointWrite, Checkpointer, InMemorySaver, PendingWrite,
    StepBlobs, StoredCheckpoint, TaskSpec, WriteKind, materialize, now_ms,
};
use crate::error::{BoxError, CheckpointError, NodeError, ResumeError, RunError};
use crate::graph::{CompiledGraph, GraphInner, Target, resolve_gotos};
use crate::ids::{CheckpointId, InterruptId, TaskId};
use crate::interrupt::PendingInterrupt;
use crate::state::{State, StateUpdate, StepWrites};

type Pieces = Vec<(usize, Box<RawValue>)>;

/// A checkpoint the run is at, with its state and decoded writes.
struct Current<S: State> {
    checkpoint: Arc<Checkpoint>,
    state: Arc<S>,
    collected: Collected,
    /// Written by this run (static `interrupt_before` breakpoints apply to it).
    created_here: bool,
}

enum Outcome<S: State> {
    Done {
        update: Option<S::Update>,
        pieces: Pieces,
        goto: Vec<TaskSpec>,
    },
    Failed {
        message: String,
        source: Option<BoxError>,
    },
    Interrupted(Vec<PendingInterrupt>),
}

struct Planned<S: State> {
    id: TaskId,
    node: usize,
    spec: TaskSpec,
    prior: Option<Outcome<S>>,
}

fn decode_err(
    thread: &str,
    what: impl Into<String>,
) -> impl FnOnce(serde_json::Error) -> CheckpointError {
    let thread = thread.to_owned();
    let what = what.into();
    move |source| CheckpointError::Decode {
        thread,
        what,
        source,
    }
}

/// Encodes an update channel by channel ([`assemble`] makes the whole JSON object).
fn encode_update<S: State>(u: &S::Update) -> Result<Pieces, serde_json::Error> {
    let written = u.written();
    let mut pieces = Vec::with_capacity(written.iter().count());
    for ch in written.iter() {
        if let Some(raw) = u.encode_channel(ch)? {
            pieces.push((ch, raw));
        }
    }
    Ok(pieces)
}

fn decode_update<S: State>(raw: &RawValue) -> Result<(S::Update, Pieces), serde_json::Error> {
    let update: S::Update = serde_json::from_str(raw.get())?;
    let pieces = encode_update::<S>(&update)?;
    Ok((update, pieces))
}

/// Applies an update and records the deltas of its delta channels.
fn apply_update<S: State>(
    state: &mut S,
    update: S::Update,
    pieces: &Pieces,
    writes: &mut StepWrites,
    blobs: &mut StepBlobs,
) -> Result<(), RunError> {
    let channels = S::channels();
    for (ch, raw) in pieces {
        if channels[*ch].reducer.is_delta() {
            blobs.push_delta(*ch, raw);
        }
    }
    state.apply(update, writes)?;
    Ok(())
}

/// The state of a checkpoint with the finished tasks' updates applied (what a paused
/// superstep looks like from outside). Falls back to the committed state if the
/// updates conflict.
fn preview<'a, S: State>(state: &Arc<S>, updates: impl Iterator<Item = &'a S::Update>) -> Arc<S> {
    let mut updates = updates.peekable();
    if updates.peek().is_none() {
        return state.clone();
    }
    let mut s = (**state).clone();
    let mut writes = StepWrites::new(S::channels());
    for u in updates {
        if s.apply(u.clone(), &mut writes).is_err() {
            return state.clone();
        }
    }
    Arc::new(s)
}

struct Runner<S: State> {
    graph: Arc<GraphInner<S>>,
    saver: Arc<dyn Checkpointer>,
    thread: Arc<str>,
    ns: Arc<str>,
    cfg: RunConfig,
    sink: Option<Sink<S>>,
    before: Vec<bool>,
    after: Vec<bool>,
    limit: usize,
    cacheable: bool,
}

/// Runs a graph from the root.
pub(crate) async fn execute<S: State>(
    graph: &Arc<GraphInner<S>>,
    input: Input<S>,
    cfg: &RunConfig,
    sink: Option<Sink<S>>,
) -> Result<RunOutput<S>, RunError> {
    let (saver, thread, cacheable): (Arc<dyn Checkpointer>, Arc<str>, bool) =
        match &graph.checkpointer {
            Some(saver) => (
                saver.clone(),
                cfg.thread_id.clone().ok_or(RunError::MissingThreadId)?,
                true,
            ),
            None => {
                match &input {
                    Input::Command(c) if c.resume.is_some() => {
                        return Err(ResumeError::NoCheckpointer.into());
                    }
                    Input::Command(_) => {
                        return Err(RunError::NoCheckpointer {
                            operation: "invoke(Command)",
                        });
                    }
                    Input::Continue => {
                        return Err(RunError::NoCheckpointer {
                            operation: "invoke(None)",
                        });
                    }
                    Input::Update(_) => {}
                }
                (Arc::new(InMemorySaver::new()), Arc::from(""), false)
            }
        };
    let flags = |names: &Option<Vec<String>>, compiled: &[bool]| -> Result<Vec<bool>, RunError> {
        match names {
            None => Ok(compiled.to_vec()),
            Some(names) => {
                let mut v = vec![false; graph.nodes.len()];
                for n in names {
                    let i = graph.node_index(n)?;
                    v[i] = true;
                }
                Ok(v)
            }
        }
    };
    let mut runner = Runner {
        graph: graph.clone(),
        saver,
        thread,
        ns: Arc::from(""),
        before: flags(&cfg.interrupt_before, &graph.interrupt_before)?,
        after: flags(&cfg.interrupt_after, &graph.interrupt_after)?,
        limit: cfg.recursion_limit.unwrap_or(graph.recursion_limit),
        cfg: cfg.clone(),
        sink,
        cacheable,
    };
    let result = async {
        let (current, answers) = runner.start(input).await?;
        let shared = Arc::new(RunShared {
            thread: runner.thread.clone(),
            saver: runner.saver.clone(),
            answers,
            events: runner.context_sink(),
            modes: runner.sink.as_ref().map_or(StreamModes::NONE, |s| s.modes),
            config: cfg.clone(),
        });
        runner.drive(current, &shared).await
    }
    .await;
    // Whatever happened, what was written is durable before the run returns.
    let flushed = runner.saver.flush().await;
    match (result, flushed) {
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

/// Runs a subgraph inside a parent task: continues its namespace's head if it has
/// one, else starts it from `initial`.
pub(crate) async fn run_subgraph<T: State>(
    subgraph: &CompiledGraph<T>,
    initial: T,
    cx: &NodeContext,
) -> Result<Arc<T>, NodeError> {
    let parent = &cx.task;
    let segment = format!("{}:{}", parent.node, parent.task_id);
    let ns: Arc<str> = if parent.ns.is_empty() {
        segment.into()
    } else {
        format!("{}|{segment}", parent.ns).into()
    };
    let graph = subgraph.inner.clone();
    let runner = Runner {
        before: graph.interrupt_before.clone(),
        after: graph.interrupt_after.clone(),
        limit: graph.recursion_limit,
        graph,
        saver: parent.run.saver.clone(),
        thread: parent.run.thread.clone(),
        ns,
        cfg: parent.run.config.clone(),
        sink: None,
        cacheable: true,
    };
    let current = match runner.load(None).await? {
        Some(head) => head,
        None => {
            runner
                .write_input(None, initial.into_update(), None)
                .await?
        }
    };
    let out = runner.drive(current, &parent.run).await?;
    match out.status {
        RunStatus::Done => Ok(out.values),
        RunStatus::Interrupted => {
            cx.propagate(out.interrupts);
            Err(crate::error::Interrupted.into())
        }
        RunStatus::Breakpoint => Err(NodeError::msg(
            "the subgraph stopped at a static breakpoint; breakpoints inside subgraphs are not supported",
        )),
    }
}

impl<S: State> Runner<S> {
    fn context_sink(&self) -> Option<ContextSink> {
        let sink = self.sink.clone()?;
        if !sink.wants(StreamMode::Custom) && !sink.wants(StreamMode::Messages) {
            return None;
        }
        Some(Arc::new(move |event| match event {
            ContextEvent::Custom { ns, node, value } => sink.send(StreamEvent::Custom {
                ns: ns.to_string(),
                node: node.to_string(),
                value,
            }),
            ContextEvent::Message { ns, node, chunk } => sink.send(StreamEvent::Message {
                ns: ns.to_string(),
                node: node.to_string(),
                chunk,
            }),
        }))
    }

    fn emit(&self, mode: StreamMode, event: impl FnOnce() -> StreamEvent<S>) {
        if let Some(sink) = &self.sink
            && sink.wants(mode)
        {
            sink.send(event());
        }
    }

    /// Loads a checkpoint with its state (from the cache when possible).
    async fn load(&self, id: Option<CheckpointId>) -> Result<Option<Current<S>>, RunError> {
        let cached = if self.cacheable {
            self.graph.cache.peek(&self.thread, &self.ns)
        } else {
            None
        };
        let Some(mut stored) = self.saver.get(&self.thread, &self.ns, id, cached).await? else {
            return Ok(None);
        };
        let state = match self
            .cacheable
            .then(|| {
                self.graph
                    .cache
                    .take(&self.thread, &self.ns, stored.checkpoint.id)
            })
            .flatten()
        {
            Some(state) => state,
            None => {
                if stored.blobs.is_empty() && !stored.checkpoint.channels.is_empty() {
                    // The saver skipped the blobs for a cached state another run took.
                    stored = self
                        .saver
                        .get(&self.thread, &self.ns, Some(stored.checkpoint.id), None)
                        .await?
                        .ok_or_else(|| CheckpointError::NotFound {
                            thread: self.thread.to_string(),
                            checkpoint: stored.checkpoint.id,
                        })?;
                }
                Arc::new(materialize(&self.thread, &stored)?)
            }
        };
        let collected = pending::collect(&stored.writes).map_err(decode_err(
            &self.thread,
            format!("pending writes of checkpoint {}", stored.checkpoint.id),
        ))?;
        Ok(Some(Current {
            checkpoint: stored.checkpoint,
            state,
            collected,
            created_here: false,
        }))
    }

    fn remember(&self, checkpoint: CheckpointId, state: &Arc<S>) {
        if self.cacheable {
            self.graph
                .cache
                .put(&self.thread, &self.ns, checkpoint, state.clone());
        }
    }

    /// Turns the input into the checkpoint the run starts from, storing what it must.
    async fn start(
        &mut self,
        input: Input<S>,
    ) -> Result<(Current<S>, HashMap<InterruptId, Value>), RunError> {
        let head = self.load(None).await?;
        match input {
            Input::Update(update) => {
                let current = self.write_input(head, update, None).await?;
                Ok((current, HashMap::new()))
            }
            Input::Continue => {
                let head = head.ok_or_else(|| RunError::UnknownThread {
                    thread: self.thread.to_string(),
                })?;
                if let Some(target) = self.cfg.checkpoint_id
                    && target != head.checkpoint.id
                {
                    let fork = self.fork(target, head).await?;
                    return Ok((fork, HashMap::new()));
                }
                let answers = head.collected.answers.clone();
                Ok((head, answers))
            }
            Input::Command(command) => self.start_command(head, command).await,
        }
    }

    async fn start_command(
        &mut self,
        head: Option<Current<S>>,
        command: Command<S>,
    ) -> Result<(Current<S>, HashMap<InterruptId, Value>), RunError> {
        let Command {
            update,
            goto,
            resume,
        } = command;
        if update.is_none() && goto.is_empty() && resume.is_none() {
            return Err(RunError::EmptyCommand);
        }
        let mut gotos = Vec::new();
        resolve_gotos(
            self.graph.id,
            &self.graph.nodes,
            "Command",
            None,
            goto,
            &mut gotos,
        )?;
        let Some(mut head) = head else {
            if resume.is_some() {
                return Err(ResumeError::UnknownThread {
                    thread: self.thread.to_string(),
                }
                .into());
            }
            let next = (!gotos.is_empty()).then_some(gotos);
            let current = self
                .write_input(None, update.unwrap_or_default(), next)
                .await?;
            return Ok((current, HashMap::new()));
        };
        if let Some(target) = self.cfg.checkpoint_id
            && target != head.checkpoint.id
        {
            return Err(ResumeError::NotAtHead {
                requested: target,
                head: head.checkpoint.id,
            }
            .into());
        }
        let mut writes = Vec::new();
        let mut answers = head.collected.answers.clone();
        if let Some(resume) = resume {
            let accepted = validate_resume(&self.graph, &self.thread, &head.collected, resume)?;
            let mut counts = head.collected.resume_counts.clone();
            for (owner, id, value) in accepted {
                let n = counts.entry(owner).or_default();
                let idx = WriteKind::RESUME_BASE_IDX - *n as i32;
                *n += 1;
                writes.push(pending::write(
                    owner,
                    idx,
                    WriteKind::Resume,
                    &ResumePayload {
                        interrupt: id,
                        value: value.clone(),
                    },
                ));
                answers.insert(id, value);
            }
            head.collected.resume_counts = counts;
            head.collected
                .pending
                .retain(|(_, id)| !answers.contains_key(id));
        }
        if update.is_some() || !gotos.is_empty() {
            let update = match update {
                Some(mut u) => {
                    u.prepare();
                    Some(assemble::<S>(&encode_update::<S>(&u).map_err(|e| {
                        RunError::InvalidUpdate {
                            writer: "command".into(),
                            message: e.to_string(),
                        }
                    })?))
                }
                None => None,
            };
            let payload = CommandPayload {
                update,
                goto: gotos,
            };
            writes.push(pending::write(
                TaskId::NULL,
                head.collected.commands.len() as i32,
                WriteKind::Command,
                &payload,
            ));
            head.collected.commands.push(payload);
        }
        self.saver
            .put_writes(&self.thread, &self.ns, head.checkpoint.id, writes)
            .await?;
        answers.shrink_to_fit();
        Ok((head, answers))
    }

    /// Writes the checkpoint of new input (applied through the reducers on top of
    /// `base`, or of the default state on a new thread).
    async fn write_input(
        &self,
        base: Option<Current<S>>,
        mut update: S::Update,
        next: Option<Vec<TaskSpec>>,
    ) -> Result<Current<S>, RunError> {
        let (parent, mut state) = match base {
            Some(c) => (Some(c.checkpoint), c.state),
            None => (None, Arc::new(S::default())),
        };
        update.prepare();
        let pieces = encode_update::<S>(&update).map_err(|e| RunError::InvalidUpdate {
            writer: "input".into(),
            message: e.to_string(),
        })?;
        let mut writes = StepWrites::new(S::channels());
        writes.set_writer("input");
        let mut blobs = StepBlobs::new(S::channels().len());
        apply_update(
            Arc::make_mut(&mut state),
            update,
            &pieces,
            &mut writes,
            &mut blobs,
        )?;
        let next = match next {
            Some(n) => n,
            None => self.entry(&state)?,
        };
        let id = CheckpointId::new_after(parent.as_ref().map(|p| p.id));
        let (channels, new_blobs) = blobs
            .finish(parent.as_deref(), &*state, writes.written(), id)
            .map_err(decode_err(&self.thread, "input"))?;
        let checkpoint = Checkpoint {
            id,
            parent_id: parent.as_ref().map(|p| p.id),
            step: parent.as_ref().map_or(-1, |p| p.step + 1),
            source: CheckpointSource::Input,
            created_at_ms: now_ms(),
            channels,
            versions_seen: parent
                .as_ref()
                .map(|p| p.versions_seen.clone())
                .unwrap_or_default(),
            next,
            metadata: self.cfg.metadata.clone(),
        };
        let current = Current {
            checkpoint: Arc::new(checkpoint),
            state,
            collected: Collected::default(),
            created_here: true,
        };
        self.put(&current, new_blobs, parent.map(|p| p.id), Vec::new())
            .await?;
        Ok(current)
    }

    async fn put(
        &self,
        current: &Current<S>,
        blobs: Vec<crate::checkpoint::Blob>,
        expected_head: Option<CheckpointId>,
        head_writes: Vec<PendingWrite>,
    ) -> Result<(), RunError> {
        self.saver
            .put(CheckpointWrite {
                thread: self.thread.to_string(),
                ns: self.ns.to_string(),
                checkpoint: current.checkpoint.clone(),
                blobs,
                expected_head,
                head_writes,
            })
            .await?;
        if self
            .sink
            .as_ref()
            .is_some_and(|s| s.wants(StreamMode::Checkpoints))
        {
            let snapshot = snapshot_of(
                &self.graph,
                &self.thread,
                &current.checkpoint,
                current.state.clone(),
                &current.collected,
                true,
            )?;
            self.emit(StreamMode::Checkpoints, || {
                StreamEvent::Checkpoint(Box::new(snapshot))
            });
        }
        Ok(())
    }

    /// Time travel: a copy of an older checkpoint becomes the head.
    async fn fork(&self, target: CheckpointId, head: Current<S>) -> Result<Current<S>, RunError> {
        let old = self
            .load(Some(target))
            .await?
            .ok_or_else(|| CheckpointError::NotFound {
                thread: self.thread.to_string(),
                checkpoint: target,
            })?;
        let id = CheckpointId::new_after(Some(head.checkpoint.id.max(target)));
        let mut metadata = old.checkpoint.metadata.clone();
        metadata.extend(self.cfg.metadata.clone());
        let checkpoint = Checkpoint {
            id,
            parent_id: Some(target),
            step: old.checkpoint.step,
            source: CheckpointSource::Fork,
            created_at_ms: now_ms(),
            channels: old.checkpoint.channels.clone(),
            versions_seen: old.checkpoint.versions_seen.clone(),
            next: old.checkpoint.next.clone(),
            metadata,
        };
        let current = Current {
            checkpoint: Arc::new(checkpoint),
            state: old.state,
            collected: Collected::default(),
            created_here: false,
        };
        self.put(&current, Vec::new(), Some(head.checkpoint.id), Vec::new())
            .await?;
        Ok(current)
    }

    /// The tasks `START` leads to.
    fn entry(&self, state: &S) -> Result<Vec<TaskSpec>, RunError> {
        let mut next = Vec::new();
        let mut seen = HashSet::new();
        route_from(
            &self.graph,
            "START",
            &self.graph.start,
            state,
            &mut next,
            &mut seen,
        )?;
        Ok(next)
    }

    fn plan(&self, current: &Current<S>) -> Result<Vec<Planned<S>>, RunError> {
        let specs = current.checkpoint.next.iter().chain(
            current
                .collected
                .commands
                .iter()
                .flat_map(|c| c.goto.iter()),
        );
        let mut planned = Vec::new();
        for (position, spec) in specs.enumerate() {
            let node =
                *self
                    .graph
                    .by_name
                    .get(&*spec.node)
                    .ok_or_else(|| CheckpointError::Corrupt {
                        thread: self.thread.to_string(),
                        message: format!(
                            "checkpoint {} schedules node `{}`, which this graph does not have \
                         (was the graph changed since it was written?)",
                            current.checkpoint.id, spec.node
                        ),
                    })?;
            let id = TaskId::derive(
                current.checkpoint.id,
                &self.ns,
                current.checkpoint.step,
                &spec.node,
                position,
            );
            let prior = match current.collected.results.get(&id) {
                Some(result) => {
                    let (update, pieces) = match &result.update {
                        Some(raw) => {
                            let (u, p) = decode_update::<S>(raw).map_err(decode_err(
                                &self.thread,
                                format!("stored result of task {id}"),
                            ))?;
                            (Some(u), p)
                        }
                        None => (None, Vec::new()),
                    };
                    Some(Outcome::Done {
                        update,
                        pieces,
                        goto: result.goto.clone(),
                    })
                }
                None => None,
            };
            planned.push(Planned {
                id,
                node,
                spec: spec.clone(),
                prior,
            });
        }
        Ok(planned)
    }

    async fn drive(
        &self,
        mut current: Current<S>,
        shared: &Arc<RunShared>,
    ) -> Result<RunOutput<S>, RunError> {
        if !current.created_here {
            self.emit(StreamMode::Values, || StreamEvent::Values {
                values: current.state.clone(),
            });
        }
        let mut steps = 0usize;
        loop {
            let mut planned = self.plan(&current)?;
            if planned.is_empty()
                && current
                    .collected
                    .commands
                    .iter()
                    .all(|c| c.update.is_none())
            {
                return Ok(self.stop(current, RunStatus::Done, Vec::new(), &planned));
            }
            if current.created_here && planned.iter().any(|t| self.before[t.node]) {
                return Ok(self.stop(current, RunStatus::Breakpoint, Vec::new(), &planned));
            }
            if steps >= self.limit {
                self.remember(current.checkpoint.id, &current.state);
                return Err(RunError::RecursionLimit { limit: self.limit });
            }
            let outcomes = self.run_tasks(&current, &mut planned, shared).await;
            let (outcomes, deferred) = match outcomes {
                Ok(o) => o,
                Err(e) => {
                    self.remember(current.checkpoint.id, &current.state);
                    return Err(e);
                }
            };
            if let Some(i) = outcomes
                .iter()
                .position(|o| matches!(o, Outcome::Failed { .. }))
            {
                self.remember(current.checkpoint.id, &current.state);
                let task = &planned[i];
                let Some(Outcome::Failed { message, source }) = outcomes.into_iter().nth(i) else {
                    unreachable!("position found a failure")
                };
                return Err(RunError::NodeFailed {
                    node: self.graph.nodes[task.node].name.to_string(),
                    task: task.id,
                    message,
                    source,
                });
            }
            let mut outcomes = outcomes;
            let interrupts: Vec<PendingInterrupt> = outcomes
                .iter_mut()
                .filter_map(|o| match o {
                    Outcome::Interrupted(list) => Some(std::mem::take(list)),
                    _ => None,
                })
                .flatten()
                .collect();
            if !interrupts.is_empty() {
                let values = preview(
                    &current.state,
                    outcomes.iter().filter_map(|o| match o {
                        Outcome::Done {
                            update: Some(u), ..
                        } => Some(u),
                        _ => None,
                    }),
                );
                if let Some(sink) = &self.sink {
                    sink.send(StreamEvent::Interrupt {
                        interrupts: interrupts.clone(),
                    });
                }
                let mut out = self.stop(current, RunStatus::Interrupted, interrupts, &planned);
                out.values = values;
                out.next = planned
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| !matches!(o, Outcome::Done { .. }))
                    .map(|(t, _)| self.graph.nodes[t.node].name.to_string())
                    .collect();
                return Ok(out);
            }
            let ran: Vec<usize> = planned.iter().map(|t| t.node).collect();
            current = self.barrier(current, &planned, outcomes, deferred).await?;
            steps += 1;
            if !current.checkpoint.next.is_empty() && ran.iter().any(|n| self.after[*n]) {
                let planned = self.plan(&current)?;
                return Ok(self.stop(current, RunStatus::Breakpoint, Vec::new(), &planned));
            }
        }
    }

    fn stop(
        &self,
        current: Current<S>,
        status: RunStatus,
        interrupts: Vec<PendingInterrupt>,
        planned: &[Planned<S>],
    ) -> RunOutput<S> {
        self.remember(current.checkpoint.id, &current.state);
        if status == RunStatus::Breakpoint {
            // A pause with nothing to answer: streams still learn that the run stopped.
            if let Some(sink) = &self.sink {
                sink.send(StreamEvent::Interrupt {
                    interrupts: Vec::new(),
                });
            }
        }
        RunOutput {
            values: current.state,
            interrupts,
            next: planned
                .iter()
                .map(|t| self.graph.nodes[t.node].name.to_string())
                .collect(),
            status,
            checkpoint_id: self.cacheable.then_some(current.checkpoint.id),
        }
    }

    async fn run_tasks(
        &self,
        current: &Current<S>,
        planned: &mut [Planned<S>],
        shared: &Arc<RunShared>,
    ) -> Result<(Vec<Outcome<S>>, Vec<PendingWrite>), RunError> {
        let mut outcomes: Vec<Option<Outcome<S>>> =
            planned.iter_mut().map(|t| t.prior.take()).collect();
        // Tasks whose node has not returned yet. The last one to finish, if it
        // finished, leaves its result to be stored with the next checkpoint (one write
        // instead of two); every other outcome is stored as soon as it is known.
        let unfinished = AtomicUsize::new(outcomes.iter().filter(|o| o.is_none()).count());
        let unfinished = &unfinished;
        // The tasks run concurrently on this run's own task: no thread hand-offs, and
        // dropping the run drops them.
        let mut running = FuturesUnordered::new();
        for (i, task) in planned.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let node = &self.graph.nodes[task.node];
            self.emit(StreamMode::Tasks, || StreamEvent::TaskStart {
                task_id: task.id,
                node: node.name.to_string(),
                step: current.checkpoint.step + 1,
            });
            let cx = NodeContext::new(TaskShared {
                run: shared.clone(),
                ns: self.ns.clone(),
                node: node.name.clone(),
                task_id: task.id,
                checkpoint_id: current.checkpoint.id,
                step: current.checkpoint.step + 1,
                input: task.spec.input.clone(),
                interrupts: Default::default(),
            });
            let fut = (node.run)(current.state.clone(), cx.clone());
            let timeout = node.timeout;
            let (node_index, task_id) = (task.node, task.id);
            let checkpoint = current.checkpoint.id;
            running.push(async move {
                let run = async move {
                    match timeout {
                        Some(d) => tokio::time::timeout(d, fut)
                            .await
                            .unwrap_or_else(|_| Err(NodeError::timeout(d))),
                        None => fut.await,
                    }
                };
                let result = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(r) => r,
                    Err(panic) => Err(NodeError::msg(format!(
                        "panicked: {}",
                        panic_message(&panic)
                    ))),
                };
                let outcome = settle(&self.graph, node_index, &cx, result);
                let write = match &outcome {
                    Outcome::Done { pieces, goto, .. } => {
                        let update = if pieces.is_empty() {
                            None
                        } else {
                            Some(assemble::<S>(pieces))
                        };
                        pending::write(
                            task_id,
                            0,
                            WriteKind::Result,
                            &ResultPayload {
                                update,
                                goto: goto.clone(),
                            },
                        )
                    }
                    Outcome::Failed { message, .. } => pending::write(
                        task_id,
                        WriteKind::ERROR_IDX,
                        WriteKind::Error,
                        &ErrorPayload {
                            message: message.clone(),
                        },
                    ),
                    Outcome::Interrupted(list) => {
                        pending::interrupts_write(task_id, list, &self.graph.validators)
                    }
                };
                let last = unfinished.fetch_sub(1, Ordering::AcqRel) == 1;
                if last && matches!(outcome, Outcome::Done { .. }) {
                    return (i, Ok((outcome, Some(write))));
                }
                let stored = self
                    .saver
                    .put_writes(&self.thread, &self.ns, checkpoint, vec![write])
                    .await
                    .map(|()| (outcome, None))
                    .map_err(RunError::from);
                (i, stored)
            });
        }
        let cancel = self.cfg.cancel.clone();
        let mut deferred = Vec::new();
        loop {
            let next = match &cancel {
                Some(token) => tokio::select! {
                    biased;
                    () = token.cancelled() => return Err(RunError::Cancelled),
                    next = running.next() => next,
                },
                None => running.next().await,
            };
            let Some((i, stored)) = next else { break };
            let (outcome, unstored) = stored?;
            deferred.extend(unstored);
            let task = &planned[i];
            let name = &self.graph.nodes[task.node].name;
            if let Outcome::Done { update, .. } = &outcome {
                self.emit(StreamMode::Updates, || StreamEvent::Update {
                    node: name.to_string(),
                    task_id: task.id,
                    update: update.clone(),
                });
            }
            self.emit(StreamMode::Tasks, || StreamEvent::TaskEnd {
                task_id: task.id,
                node: name.to_string(),
                step: current.checkpoint.step + 1,
                outcome: match &outcome {
                    Outcome::Done { pieces, .. } => TaskOutcome::Finished(
                        (!pieces.is_empty())
                            .then(|| serde_json::from_str(assemble::<S>(pieces).get()).ok())
                            .flatten(),
                    ),
                    Outcome::Failed { message, .. } => TaskOutcome::Failed(message.clone()),
                    Outcome::Interrupted(list) => TaskOutcome::Interrupted(list.clone()),
                },
            });
            outcomes[i] = Some(outcome);
        }
        drop(running);
        let outcomes: Vec<Outcome<S>> = outcomes
            .into_iter()
            .map(|o| o.expect("every task has an outcome"))
            .collect();
        if !deferred.is_empty() && outcomes.iter().any(|o| !matches!(o, Outcome::Done { .. })) {
            // No checkpoint follows this step: store the result now.
            self.store_writes(current.checkpoint.id, std::mem::take(&mut deferred))
                .await?;
        }
        Ok((outcomes, deferred))
    }

    async fn store_writes(
        &self,
        checkpoint: CheckpointId,
        writes: Vec<PendingWrite>,
    ) -> Result<(), RunError> {
        self.saver
            .put_writes(&self.thread, &self.ns, checkpoint, writes)
            .await
            .map_err(RunError::from)
    }

    /// Applies a finished superstep and writes the next checkpoint.
    async fn barrier(
        &self,
        current: Current<S>,
        planned: &[Planned<S>],
        outcomes: Vec<Outcome<S>>,
        head_writes: Vec<PendingWrite>,
    ) -> Result<Current<S>, RunError> {
        let parent = current.checkpoint.id;
        let (current, blobs) = match self.apply_step(current, planned, outcomes) {
            Ok(next) => next,
            Err(e) => {
                // The step's results stay stored, so they are not computed again.
                if !head_writes.is_empty() {
                    self.store_writes(parent, head_writes).await?;
                }
                return Err(e);
            }
        };
        self.put(&current, blobs, Some(parent), head_writes).await?;
        self.emit(StreamMode::Values, || StreamEvent::Values {
            values: current.state.clone(),
        });
        Ok(current)
    }

    /// Applies a finished superstep: the next checkpoint and its new blobs.
    fn apply_step(
        &self,
        current: Current<S>,
        planned: &[Planned<S>],
        outcomes: Vec<Outcome<S>>,
    ) -> Result<(Current<S>, Vec<crate::checkpoint::Blob>), RunError> {
        let Current {
            checkpoint: parent,
            mut state,
            collected,
            ..
        } = current;
        let mut writes = StepWrites::new(S::channels());
        let mut blobs = StepBlobs::new(S::channels().len());
        let mut routes: Vec<(usize, Vec<TaskSpec>)> = Vec::with_capacity(planned.len());
        {
            let s = Arc::make_mut(&mut state);
            for command in &collected.commands {
                if let Some(raw) = &command.update {
                    let (u, pieces) = decode_update::<S>(raw)
                        .map_err(decode_err(&self.thread, "a command's update"))?;
                    writes.set_writer("command");
                    apply_update(s, u, &pieces, &mut writes, &mut blobs)?;
                }
            }
            for (task, outcome) in planned.iter().zip(outcomes) {
                let Outcome::Done {
                    update,
                    pieces,
                    goto,
                } = outcome
                else {
                    unreachable!("the barrier only runs when every task finished")
                };
                if let Some(u) = update {
                    writes.set_writer(self.graph.nodes[task.node].name.to_string());
                    apply_update(s, u, &pieces, &mut writes, &mut blobs)?;
                }
                routes.push((task.node, goto));
            }
        }
        let mut next = Vec::new();
        let mut triggered = HashSet::new();
        for (node, goto) in &routes {
            let name = &self.graph.nodes[*node].name;
            route_from(
                &self.graph,
                name,
                &self.graph.edges[*node],
                &state,
                &mut next,
                &mut triggered,
            )?;
            for spec in goto {
                push_task(&self.graph, spec.clone(), &mut next, &mut triggered);
            }
        }
        let id = CheckpointId::new_after(Some(parent.id));
        let mut seen = parent.versions_seen.clone();
        let ran: HashSet<usize> = routes.iter().map(|(n, _)| *n).collect();
        for n in &ran {
            seen.insert(self.graph.nodes[*n].name.clone(), id);
        }
        for join in &self.graph.joins {
            let target_seen = seen.get(&self.graph.nodes[join.target].name);
            let ready = join.sources.iter().any(|s| ran.contains(s))
                && join.sources.iter().all(|s| {
                    let source_seen = seen.get(&self.graph.nodes[*s].name);
                    source_seen.is_some() && source_seen > target_seen
                });
            if ready {
                push_task(
                    &self.graph,
                    TaskSpec::node(self.graph.nodes[join.target].name.clone()),
                    &mut next,
                    &mut triggered,
                );
            }
        }
        let (channels, new_blobs) = blobs
            .finish(Some(&parent), &*state, writes.written(), id)
            .map_err(decode_err(&self.thread, "channel values"))?;
        // Checkpoints are kept (in memory, in history): no spare capacity.
        next.shrink_to_fit();
        let checkpoint = Checkpoint {
            id,
            parent_id: Some(parent.id),
            step: parent.step + 1,
            source: CheckpointSource::Loop,
            created_at_ms: now_ms(),
            channels,
            versions_seen: seen,
            next,
            metadata: self.cfg.metadata.clone(),
        };
        let current = Current {
            checkpoint: Arc::new(checkpoint),
            state,
            collected: Collected::default(),
            created_here: true,
        };
        Ok((current, new_blobs))
    }
}

/// Adds the routes of `edges` (fixed and conditional, evaluated on `state`).
fn route_from<S: State>(
    graph: &GraphInner<S>,
    from: &str,
    edges: &crate::graph::Edges<S>,
    state: &S,
    next: &mut Vec<TaskSpec>,
    triggered: &mut HashSet<usize>,
) -> Result<(), RunError> {
    for target in &edges.fixed {
        if let Target::Node(i) = target {
            push_task(
                graph,
                TaskSpec::node(graph.nodes[*i].name.to_string()),
                next,
                triggered,
            );
        }
    }
    for conditional in &edges.conditional {
        let route = (conditional.route)(state);
        let mut specs = Vec::new();
        resolve_gotos(
            graph.id,
            &graph.nodes,
            from,
            conditional.targets.as_deref(),
            route.0,
            &mut specs,
        )?;
        for spec in specs {
            push_task(graph, spec, next, triggered);
        }
    }
    Ok(())
}

/// Schedules a task; plain node triggers are merged, sends never are.
fn push_task<S: State>(
    graph: &GraphInner<S>,
    spec: TaskSpec,
    next: &mut Vec<TaskSpec>,
    triggered: &mut HashSet<usize>,
) {
    if spec.input.is_none() {
        let Some(&i) = graph.by_name.get(&*spec.node) else {
            return;
        };
        if !triggered.insert(i) {
            return;
        }
    }
    next.push(spec);
}

fn assemble<S: State>(pieces: &Pieces) -> Box<RawValue> {
    let channels = S::channels();
    let len = pieces
        .iter()
        .map(|(ch, raw)| channels[*ch].name.len() + raw.get().len() + 4)
        .sum::<usize>();
    let mut json = String::with_capacity(len + 2);
    json.push('{');
    for (ch, raw) in pieces {
        if json.len() > 1 {
            json.push(',');
        }
        json.push('"');
        json.push_str(channels[*ch].name);
        json.push_str("\":");
        json.push_str(raw.get());
    }
    json.push('}');
    RawValue::from_string(json).expect("concatenated valid JSON is valid JSON")
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Turns what a node returned (and what its context recorded) into an outcome.
fn settle<S: State>(
    graph: &GraphInner<S>,
    node: usize,
    cx: &NodeContext,
    result: Result<crate::graph::NodeOutput<S>, NodeError>,
) -> Outcome<S> {
    let (raised, failure) = cx.take_outcome();
    if let Some(message) = failure {
        return Outcome::Failed {
            message,
            source: None,
        };
    }
    if !raised.is_empty() {
        return Outcome::Interrupted(raised);
    }
    let spec = &graph.nodes[node];
    let output = match result {
        Ok(output) => output,
        Err(e) if e.is_interrupt() => {
            return Outcome::Failed {
                message: "returned `Interrupted` without a pending interrupt; only propagate \
                          the error `interrupt()` returned"
                    .into(),
                source: None,
            };
        }
        Err(e) => {
            return Outcome::Failed {
                message: e.to_string(),
                source: e.into_source(),
            };
        }
    };
    if output.resume_in_node {
        return Outcome::Failed {
            message: "a node returned a `Command` with a resume value; nodes update and route, \
                      only callers resume"
                .into(),
            source: None,
        };
    }
    let mut goto = Vec::new();
    let allowed = spec.goto_targets.as_deref().unwrap_or(&[]);
    if let Err(e) = resolve_gotos(
        graph.id,
        &graph.nodes,
        &spec.name,
        Some(allowed),
        output.goto,
        &mut goto,
    ) {
        return Outcome::Failed {
            message: e.to_string(),
            source: None,
        };
    }
    let mut update = output.update;
    let pieces = match &mut update {
        Some(u) => {
            u.prepare();
            match encode_update::<S>(u) {
                Ok(pieces) => pieces,
                Err(e) => {
                    return Outcome::Failed {
                        message: format!("its update does not serialize to JSON: {e}"),
                        source: None,
                    };
                }
            }
        }
        None => Vec::new(),
    };
    Outcome::Done {
        update,
        pieces,
        goto,
    }
}

/// Checks a resume against the pending interrupts, strictly. Returns the answers to
/// store: (task holding the interrupt, interrupt id, value).
fn validate_resume<S: State>(
    graph: &GraphInner<S>,
    thread: &str,
    collected: &Collected,
    resume: Resume,
) -> Result<Vec<(TaskId, InterruptId, Value)>, ResumeError> {
    let pending = &collected.pending;
    if pending.is_empty() {
        return Err(ResumeError::NothingPending {
            thread: thread.to_owned(),
        });
    }
    let pending_ids = || pending.iter().map(|(_, id)| *id).collect::<Vec<_>>();
    let chosen: Vec<(TaskId, InterruptId, Result<Value, String>)> = match resume {
        Resume::Single(value) => {
            if pending.len() > 1 {
                return Err(ResumeError::Ambiguous {
                    pending: pending_ids(),
                });
            }
            vec![(pending[0].0, pending[0].1, value)]
        }
        Resume::ById(list) => {
            if list.is_empty() {
                return Err(ResumeError::EmptyMap {
                    pending: pending_ids(),
                });
            }
            let mut seen = HashSet::new();
            let mut chosen = Vec::with_capacity(list.len());
            for (id, value) in list {
                if !seen.insert(id) {
                    return Err(ResumeError::InvalidValue {
                        id,
                        problems: vec!["it is answered twice in one resume".into()],
                    });
                }
                match pending.iter().find(|(_, p)| *p == id) {
                    Some((owner, p)) => chosen.push((*owner, *p, value)),
                    None if collected.answers.contains_key(&id) => {
                        return Err(ResumeError::AlreadyAnswered { id });
                    }
                    None => {
                        return Err(ResumeError::UnknownInterrupt {
                            id,
                            pending: pending_ids(),
                        });
                    }
                }
            }
            chosen
        }
    };
    let mut accepted = Vec::with_capacity(chosen.len());
    for (owner, id, value) in chosen {
        let invalid = |problems| ResumeError::InvalidValue { id, problems };
        let value = value.map_err(|e| invalid(vec![e]))?;
        let record = collected
            .record(id)
            .ok_or_else(|| invalid(vec!["its stored record is missing".into()]))?;
        let view = record
            .view()
            .map_err(|e| invalid(vec![format!("its stored record does not decode: {e}")]))?;
        if let Some(kind) = &view.kind {
            let validator =
                graph
                    .validators
                    .get(kind.as_ref())
                    .ok_or_else(|| ResumeError::UnknownKind {
                        id,
                        kind: kind.to_string(),
                    })?;
            let payload: Value = serde_json::from_str(view.value.get())
                .map_err(|e| invalid(vec![format!("its stored payload does not decode: {e}")]))?;
            validator.check(&payload, &value).map_err(invalid)?;
        }
        // A kind that derives the schema left it out; its check covers it.
        if let Some(schema) = view.resume_schema {
            crate::schema::validate_raw(schema, &value).map_err(invalid)?;
        }
        accepted.push((owner, id, value));
    }
    Ok(accepted)
}

/// A snapshot of a stored checkpoint.
pub(crate) fn snapshot_of<S: State>(
    graph: &GraphInner<S>,
    thread: &str,
    checkpoint: &Checkpoint,
    state: Arc<S>,
    collected: &Collected,
    is_head: bool,
) -> Result<StateSnapshot<S>, RunError> {
    let specs = checkpoint
        .next
        .iter()
        .chain(collected.commands.iter().flat_map(|c| c.goto.iter()));
    let mut tasks = Vec::new();
    let mut finished_updates = Vec::new();
    for (position, spec) in specs.enumerate() {
        let id = TaskId::derive(checkpoint.id, "", checkpoint.step, &spec.node, position);
        let result = collected.results.get(&id);
        if let Some(raw) = result.and_then(|r| r.update.as_ref())
            && let Ok(u) = serde_json::from_str::<S::Update>(raw.get())
        {
            finished_updates.push(u);
        }
        let interrupts = if is_head {
            collected.pending_of(id, &graph.validators)
        } else {
            collected.raised_by(id, &graph.validators)
        }
        .map_err(decode_err(thread, format!("the interrupts of task {id}")))?;
        tasks.push(TaskInfo {
            id,
            name: spec.node.to_string(),
            error: collected.errors.get(&id).cloned(),
            interrupts,
            result: result
                .and_then(|r| r.update.as_ref())
                .and_then(|raw| serde_json::from_str(raw.get()).ok()),
        });
    }
    let interrupts = tasks
        .iter()
        .flat_map(|t| t.interrupts.iter().cloned())
        .collect();
    // At the head, `next` lists the tasks still to run. If every task of the step has
    // finished but the barrier has not run yet (the process stopped in between), they
    // are all listed: the step is not applied, so the thread is not done.
    let unfinished: Vec<String> = tasks
        .iter()
        .filter(|t| !is_head || !collected.results.contains_key(&t.id))
        .map(|t| t.name.clone())
        .collect();
    let next = if unfinished.is_empty() {
        tasks.iter().map(|t| t.name.clone()).collect()
    } else {
        unfinished
    };
    let values = if is_head {
        preview(&state, finished_updates.iter())
    } else {
        state
    };
    let _ = graph;
    let config = RunConfig::thread(thread).at_checkpoint(checkpoint.id);
    Ok(StateSnapshot {
        values,
        next,
        tasks,
        interrupts,
        checkpoint_id: checkpoint.id,
        parent_checkpoint_id: checkpoint.parent_id,
        step: checkpoint.step,
        source: checkpoint.source,
        created_at: checkpoint.created_at(),
        parent_config: checkpoint
            .parent_id
            .map(|p| RunConfig::thread(thread).at_checkpoint(p)),
        metadata: checkpoint.metadata.clone(),
        config,
    })
}

/// Reads a stored checkpoint as a snapshot.
pub(crate) fn snapshot_from_stored<S: State>(
    graph: &GraphInner<S>,
    thread: &str,
    stored: StoredCheckpoint,
    is_head: bool,
) -> Result<StateSnapshot<S>, RunError> {
    let state = Arc::new(materialize::<S>(thread, &stored)?);
    let collected = pending::collect(&stored.writes).map_err(decode_err(
        thread,
        format!("pending writes of checkpoint {}", stored.checkpoint.id),
    ))?;
    snapshot_of(
        graph,
        thread,
        &stored.checkpoint,
        state,
        &collected,
        is_head,
    )
}

/// Writes an `update_state` checkpoint.
pub(crate) async fn update_state<S: State>(
    graph: &Arc<GraphInner<S>>,
    cfg: &RunConfig,
    update: S::Update,
    as_node: Option<usize>,
) -> Result<RunConfig, RunError> {
    let saver = graph.checkpointer.clone().ok_or(RunError::NoCheckpointer {
        operation: "update_state",
    })?;
    let thread = cfg.thread_id.clone().ok_or(RunError::MissingThreadId)?;
    let runner = Runner {
        graph: graph.clone(),
        saver,
        thread: thread.clone(),
        ns: Arc::from(""),
        cfg: cfg.clone(),
        sink: None,
        before: Vec::new(),
        after: Vec::new(),
        limit: 0,
        cacheable: true,
    };
    let head = runner
        .load(None)
        .await?
        .ok_or_else(|| RunError::UnknownThread {
            thread: thread.to_string(),
        })?;
    let head_id = head.checkpoint.id;
    let base = match cfg.checkpoint_id {
        Some(id) if id != head_id => {
            drop(head);
            runner
                .load(Some(id))
                .await?
                .ok_or_else(|| CheckpointError::NotFound {
                    thread: thread.to_string(),
                    checkpoint: id,
                })?
        }
        _ => head,
    };
    let Current {
        checkpoint: parent,
        mut state,
        ..
    } = base;
    let mut update = update;
    update.prepare();
    let pieces = encode_update::<S>(&update).map_err(|e| RunError::InvalidUpdate {
        writer: "update_state".into(),
        message: e.to_string(),
    })?;
    let writer = as_node.map_or_else(
        || "update_state".to_owned(),
        |n| graph.nodes[n].name.to_string(),
    );
    let mut writes = StepWrites::new(S::channels());
    writes.set_writer(writer);
    let mut blobs = StepBlobs::new(S::channels().len());
    apply_update(
        Arc::make_mut(&mut state),
        update,
        &pieces,
        &mut writes,
        &mut blobs,
    )?;
    let id = CheckpointId::new_after(Some(head_id.max(parent.id)));
    let mut seen = parent.versions_seen.clone();
    let next = match as_node {
        Some(n) => {
            seen.insert(graph.nodes[n].name.clone(), id);
            let mut next = Vec::new();
            let mut triggered = HashSet::new();
            route_from(
                graph,
                &graph.nodes[n].name,
                &graph.edges[n],
                &state,
                &mut next,
                &mut triggered,
            )?;
            next
        }
        None => parent.next.clone(),
    };
    let (channels, new_blobs) = blobs
        .finish(Some(&parent), &*state, writes.written(), id)
        .map_err(decode_err(&thread, "channel values"))?;
    let checkpoint = Checkpoint {
        id,
        parent_id: Some(parent.id),
        step: parent.step + 1,
        source: CheckpointSource::Update,
        created_at_ms: now_ms(),
        channels,
        versions_seen: seen,
        next,
        metadata: cfg.metadata.clone(),
    };
    let current = Current {
        checkpoint: Arc::new(checkpoint),
        state,
        collected: Collected::default(),
        created_here: true,
    };
    runner
        .put(&current, new_blobs, Some(head_id), Vec::new())
        .await?;
    runner.saver.flush().await?;
    runner.remember(current.checkpoint.id, &current.state);
    Ok(RunConfig::thread(thread.to_string()).at_checkpoint(current.checkpoint.id))
}
