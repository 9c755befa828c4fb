//! The run loop as a step machine.
//!
//! A run is a sequence of [`Phase`]s. [`Runner::step`] takes one phase and returns the
//! next; [`Runner::drive`] repeats it until [`Phase::Done`], the single exit, where the
//! run's last state is cached. [`execute`] makes every write durable (`flush`) before
//! it returns.
//!
//! ```text
//! Start ─► Plan ─► Run ─► Barrier ─► Plan ─► …
//!           │       │        └─► Pause (breakpoint after)
//!           │       ├─► Pause (interrupts)
//!           │       └─► Fail (a task failed, storage, cancellation)
//!           ├─► Pause (breakpoint before)
//!           ├─► Fail (recursion limit)
//!           └─► Done (nothing left to run)
//! Pause, Fail ─► Done
//! ```

use std::sync::Arc;

use super::commit::{Draft, Made, Pieces, decode_update, encode_given};
use super::compiled::GraphInner;
use super::input::Input;
use super::lease::Lease;
use super::output::{RunOutput, RunStatus};
use super::snapshot::preview;
use super::stream::{Sink, StreamEvent};
use super::tasks::{Outcome, Planned, Ran};
use crate::checkpoint::pending::Collected;
use crate::checkpoint::{Blob, Checkpoint, Checkpointer, InMemorySaver, TaskSpec};
use crate::context::{ContextEvent, ContextSink, RunConfig, RunShared, StreamMode, StreamModes};
use crate::error::{CheckpointError, ResumeError, RunError};
use crate::ids::CheckpointId;
use crate::interrupt::PendingInterrupt;
use crate::state::State;

/// A checkpoint the run is at, with its state and decoded pending writes.
pub(crate) struct Current<S: State> {
    pub(crate) checkpoint: Arc<Checkpoint>,
    pub(crate) state: Arc<S>,
    /// Boxed: a `Current` moves from phase to phase, and this is most of its size.
    pub(crate) collected: Box<Collected>,
    /// Written by this run (static `interrupt_before` breakpoints apply to it).
    pub(crate) created_here: bool,
}

impl<S: State> Current<S> {
    /// A checkpoint just made, with no pending writes yet; and its new blobs.
    pub(crate) fn made(made: Made<S>, created_here: bool) -> (Self, Vec<Blob>) {
        let current = Current {
            checkpoint: made.checkpoint,
            state: made.state,
            collected: Box::default(),
            created_here,
        };
        (current, made.blobs)
    }
}

/// Why a run stops to wait for a human.
pub(crate) enum Pause<S: State> {
    /// Tasks raised interrupts: every pending one, the state with the finished
    /// tasks' updates applied, and the nodes still to run.
    Interrupted {
        interrupts: Vec<PendingInterrupt>,
        values: Arc<S>,
        next: Vec<String>,
    },
    /// A static breakpoint, before these tasks.
    Breakpoint(Vec<Planned<S>>),
}

/// Where a run is.
pub(crate) enum Phase<S: State> {
    /// Turn the input into the checkpoint the run starts from (writing it, storing a
    /// command's writes, or forking).
    Start(Input<S>),
    /// At a checkpoint: decide what runs next.
    Plan(Current<S>),
    /// Run the planned tasks of one superstep.
    Run(Current<S>, Vec<Planned<S>>),
    /// Every task finished: apply their updates, route, write the next checkpoint.
    Barrier(Current<S>, Vec<Planned<S>>, Ran<S>),
    /// Stop and wait: interrupts or a breakpoint.
    Pause(Current<S>, Pause<S>),
    /// Stop with an error; the checkpoint the run was at, if any.
    Fail(Option<Current<S>>, RunError),
    /// The single exit: the run's result, and the checkpoint to cache.
    Done(Exit<S>),
}

/// How a run ended.
pub(crate) struct Exit<S: State> {
    /// The checkpoint and state the run ended at, kept in the state cache.
    pub(crate) at: Option<(CheckpointId, Arc<S>)>,
    pub(crate) result: Result<RunOutput<S>, RunError>,
}

impl<S: State> Phase<S> {
    /// The phase's name, for logs and tests.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Phase::Start(_) => "start",
            Phase::Plan(_) => "plan",
            Phase::Run(..) => "run",
            Phase::Barrier(..) => "barrier",
            Phase::Pause(..) => "pause",
            Phase::Fail(..) => "fail",
            Phase::Done(_) => "done",
        }
    }
}

/// One run of one graph (or subgraph) on one thread namespace.
pub(crate) struct Runner<S: State> {
    pub(crate) graph: Arc<GraphInner<S>>,
    pub(crate) saver: Arc<dyn Checkpointer>,
    pub(crate) thread: Arc<str>,
    pub(crate) ns: Arc<str>,
    pub(crate) cfg: RunConfig,
    pub(crate) sink: Option<Sink<S>>,
    /// Breakpoint flags per node.
    pub(crate) before: Vec<bool>,
    pub(crate) after: Vec<bool>,
    /// At most this many supersteps.
    pub(crate) limit: usize,
    /// Supersteps run so far.
    pub(crate) steps: usize,
    /// Whether states may be cached (a graph with a checkpointer).
    pub(crate) cacheable: bool,
    /// What the tasks of this run share; set by `Start` (or by the parent task of a
    /// subgraph).
    pub(crate) shared: Option<Arc<RunShared>>,
    /// Who answered in this run's resume, if anyone said.
    pub(crate) reviewer: Option<crate::governance::Reviewer>,
}

/// Runs a graph from the root.
pub(crate) async fn execute<S: State>(
    graph: &Arc<GraphInner<S>>,
    input: Input<S>,
    cfg: &RunConfig,
    sink: Option<Sink<S>>,
) -> Result<RunOutput<S>, RunError> {
    let mut runner = Runner::root(graph, &input, cfg, sink)?;
    // One runner per thread (a throwaway thread without a checkpointer needs none).
    let lease = match runner.cacheable {
        true => Some(Lease::acquire(&runner.saver, &runner.thread, graph.run_lease).await?),
        false => None,
    };
    let result = match &lease {
        Some(lease) => {
            let drive = std::pin::pin!(runner.drive(Phase::Start(input)));
            lease.hold(drive).await.and_then(|result| result)
        }
        None => runner.drive(Phase::Start(input)).await,
    };
    // Whatever happened, what was written is durable before the run returns.
    let ended = match lease {
        Some(lease) => lease.end().await,
        None => runner.saver.flush().await,
    };
    match (result, ended) {
        (Ok(out), Ok(())) => Ok(out),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

impl<S: State> Runner<S> {
    /// A runner for a run from the root of `graph`. Without a checkpointer, only new
    /// input can run (on a throwaway in-memory thread).
    pub(crate) fn root(
        graph: &Arc<GraphInner<S>>,
        input: &Input<S>,
        cfg: &RunConfig,
        sink: Option<Sink<S>>,
    ) -> Result<Self, RunError> {
        let (saver, thread, cacheable): (Arc<dyn Checkpointer>, Arc<str>, bool) =
            match &graph.checkpointer {
                Some(saver) => (
                    saver.clone(),
                    cfg.thread_id.clone().ok_or(RunError::MissingThreadId)?,
                    true,
                ),
                None => {
                    let operation = match input {
                        Input::Command(c) if c.has_resume() => {
                            return Err(ResumeError::NoCheckpointer.into());
                        }
                        Input::Command(_) => Some("invoke(Command)"),
                        Input::Continue => Some("invoke(None)"),
                        Input::Update(_) => None,
                    };
                    if let Some(operation) = operation {
                        return Err(RunError::NoCheckpointer { operation });
                    }
                    (Arc::new(InMemorySaver::new()), Arc::from(""), false)
                }
            };
        Ok(Runner {
            before: graph.breakpoints(cfg.interrupt_before.as_deref(), &graph.interrupt_before)?,
            after: graph.breakpoints(cfg.interrupt_after.as_deref(), &graph.interrupt_after)?,
            limit: cfg.recursion_limit.unwrap_or(graph.recursion_limit),
            steps: 0,
            graph: graph.clone(),
            saver,
            thread,
            ns: Arc::from(""),
            cfg: cfg.clone(),
            sink,
            cacheable,
            shared: None,
            reviewer: None,
        })
    }

    /// Steps from `phase` to [`Phase::Done`]; the single exit caches the state the run
    /// ended at.
    pub(crate) async fn drive(&mut self, mut phase: Phase<S>) -> Result<RunOutput<S>, RunError> {
        let exit = loop {
            phase = match phase {
                Phase::Done(exit) => break exit,
                other => {
                    tracing::trace!(thread = %self.thread, ns = %self.ns, phase = other.name(), "run step");
                    self.step(other).await
                }
            };
        };
        if let Some((id, state)) = exit.at {
            self.remember(id, state);
        }
        exit.result
    }

    /// One transition.
    pub(crate) async fn step(&mut self, phase: Phase<S>) -> Phase<S> {
        match phase {
            Phase::Start(input) => match self.start(input).await {
                Ok(current) => Phase::Plan(current),
                Err(e) => Phase::Fail(None, e),
            },
            Phase::Plan(current) => self.plan_step(current),
            Phase::Run(current, mut planned) => {
                let shared = self.shared_for(&current);
                match self.run_tasks(&current, &mut planned, &shared).await {
                    Ok(ran) => self.after_run(current, planned, ran),
                    Err(e) => Phase::Fail(Some(current), e),
                }
            }
            Phase::Barrier(current, planned, ran) => self.barrier(current, planned, ran).await,
            Phase::Pause(current, pause) => Phase::Done(self.pause(current, pause)),
            Phase::Fail(current, error) => Phase::Done(Exit {
                at: current.map(|c| (c.checkpoint.id, c.state)),
                result: Err(error),
            }),
            done @ Phase::Done(_) => done,
        }
    }

    /// What the tasks share, made once per run.
    fn shared_for(&mut self, current: &Current<S>) -> Arc<RunShared> {
        if let Some(shared) = &self.shared {
            return shared.clone();
        }
        let shared = Arc::new(RunShared {
            thread: self.thread.clone(),
            saver: self.saver.clone(),
            answers: current.collected.answers.clone(),
            waiting: current.collected.waiting(&self.graph.validators),
            reviewer: self.reviewer.clone(),
            events: self.context_sink(),
            modes: self.sink.as_ref().map_or(StreamModes::NONE, |s| s.modes),
            config: self.cfg.clone(),
        });
        self.shared = Some(shared.clone());
        shared
    }

    /// `Plan`: nothing to run → done; a breakpoint before a planned node → pause; the
    /// recursion limit → fail; else run.
    fn plan_step(&mut self, current: Current<S>) -> Phase<S> {
        let planned = match self.plan(&current) {
            Ok(planned) => planned,
            Err(e) => return Phase::Fail(Some(current), e),
        };
        let commands_update = current
            .collected
            .commands
            .iter()
            .any(|c| c.update.is_some());
        if planned.is_empty() && !commands_update {
            return Phase::Done(self.finish(current, RunStatus::Done, Vec::new(), &planned));
        }
        if current.created_here && planned.iter().any(|t| self.before[t.node]) {
            return Phase::Pause(current, Pause::Breakpoint(planned));
        }
        if self.steps >= self.limit {
            let limit = self.limit;
            return Phase::Fail(Some(current), RunError::RecursionLimit { limit });
        }
        Phase::Run(current, planned)
    }

    /// After `Run`: the first failure fails the run; interrupts pause it; otherwise
    /// the barrier.
    fn after_run(&self, current: Current<S>, planned: Vec<Planned<S>>, ran: Ran<S>) -> Phase<S> {
        let Ran {
            mut outcomes,
            deferred,
        } = ran;
        if let Some(i) = outcomes
            .iter()
            .position(|o| matches!(o, Outcome::Failed { .. }))
        {
            let task = &planned[i];
            let Outcome::Failed { message, source } = outcomes.swap_remove(i) else {
                unreachable!("position found a failure")
            };
            let error = RunError::NodeFailed {
                node: self.graph.topology.name(task.node).to_string(),
                task: task.id,
                message,
                source,
            };
            return Phase::Fail(Some(current), error);
        }
        // The first interrupted task's list is taken as it is (sized when raised); the
        // others, if any, are appended to it.
        let mut interrupts: Vec<PendingInterrupt> = Vec::new();
        for o in &mut outcomes {
            if let Outcome::Interrupted(list) = o {
                if interrupts.is_empty() {
                    interrupts = std::mem::take(list);
                } else {
                    interrupts.append(list);
                }
            }
        }
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
            let next = planned
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| !matches!(o, Outcome::Done { .. }))
                .map(|(t, _)| self.graph.topology.name(t.node).to_string())
                .collect();
            return Phase::Pause(
                current,
                Pause::Interrupted {
                    interrupts,
                    values,
                    next,
                },
            );
        }
        Phase::Barrier(current, planned, Ran { outcomes, deferred })
    }

    /// `Pause`: the output of a run waiting for a human.
    fn pause(&self, current: Current<S>, pause: Pause<S>) -> Exit<S> {
        match pause {
            Pause::Interrupted {
                interrupts,
                values,
                next,
            } => {
                if let Some(sink) = &self.sink {
                    sink.send(StreamEvent::Interrupt {
                        interrupts: interrupts.clone(),
                    });
                }
                let mut exit = self.finish(current, RunStatus::Interrupted, interrupts, &[]);
                if let Ok(out) = &mut exit.result {
                    out.values = values;
                    out.next = next;
                }
                exit
            }
            Pause::Breakpoint(planned) => {
                // A pause with nothing to answer: streams still learn that the run stopped.
                if let Some(sink) = &self.sink {
                    sink.send(StreamEvent::Interrupt {
                        interrupts: Vec::new(),
                    });
                }
                self.finish(current, RunStatus::Breakpoint, Vec::new(), &planned)
            }
        }
    }

    /// The exit of a run that stopped at `current`.
    fn finish(
        &self,
        current: Current<S>,
        status: RunStatus,
        interrupts: Vec<PendingInterrupt>,
        planned: &[Planned<S>],
    ) -> Exit<S> {
        let out = RunOutput {
            values: current.state.clone(),
            interrupts,
            next: planned
                .iter()
                .map(|t| self.graph.topology.name(t.node).to_string())
                .collect(),
            status,
            checkpoint_id: self.cacheable.then_some(current.checkpoint.id),
        };
        Exit {
            at: Some((current.checkpoint.id, current.state)),
            result: Ok(out),
        }
    }

    /// `Barrier`: applies a finished superstep and writes the next checkpoint, then
    /// plans it, or pauses at a breakpoint after a node that ran.
    async fn barrier(
        &mut self,
        current: Current<S>,
        planned: Vec<Planned<S>>,
        ran: Ran<S>,
    ) -> Phase<S> {
        let parent = current.checkpoint.id;
        let Ran { outcomes, deferred } = ran;
        let ran_nodes: Vec<usize> = planned.iter().map(|t| t.node).collect();
        let next = match self.apply_step(current, &planned, outcomes) {
            Ok(next) => next,
            Err(e) => {
                // The step's results stay stored, so they are not computed again.
                if !deferred.is_empty()
                    && let Err(stored) = self.store_writes(parent, deferred).await
                {
                    return Phase::Fail(None, stored);
                }
                return Phase::Fail(None, e);
            }
        };
        let (current, blobs) = next;
        if let Err(e) = self.put(&current, blobs, Some(parent), deferred).await {
            return Phase::Fail(None, e);
        }
        self.emit(StreamMode::Values, || StreamEvent::Values {
            values: current.state.clone(),
        });
        self.steps += 1;
        if !current.checkpoint.next.is_empty() && ran_nodes.iter().any(|n| self.after[*n]) {
            return match self.plan(&current) {
                Ok(planned) => Phase::Pause(current, Pause::Breakpoint(planned)),
                Err(e) => Phase::Fail(Some(current), e),
            };
        }
        Phase::Plan(current)
    }

    /// The next checkpoint of a finished superstep, and its new blobs: commands'
    /// updates first, then the tasks' in task order; routes on the new state.
    fn apply_step(
        &self,
        current: Current<S>,
        planned: &[Planned<S>],
        outcomes: Vec<Outcome<S>>,
    ) -> Result<(Current<S>, Vec<Blob>), RunError> {
        let Current {
            checkpoint: parent,
            state,
            collected,
            ..
        } = current;
        let mut draft = Draft::barrier(parent, state);
        for command in &collected.commands {
            if let Some(raw) = &command.update {
                let (u, pieces) = decode_update::<S>(raw).map_err(CheckpointError::decoding(
                    &self.thread,
                    "a command's update",
                ))?;
                draft.apply(&Arc::from("command"), u, &pieces)?;
            }
        }
        let mut ran: Vec<(usize, Vec<TaskSpec>)> = Vec::with_capacity(planned.len());
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
                draft.apply(self.graph.topology.name(task.node), u, &pieces)?;
            }
            ran.push((task.node, goto));
        }
        let id = draft.id();
        let mut seen = std::mem::take(draft.seen_mut());
        let next = self
            .graph
            .topology
            .next_tasks(&ran, draft.state(), &mut seen, id)?;
        *draft.seen_mut() = seen;
        let (current, blobs) = Current::made(
            draft.finish(&self.thread, next, self.cfg.metadata.clone())?,
            true,
        );
        Ok((current, blobs))
    }

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

    pub(crate) fn emit(&self, mode: StreamMode, event: impl FnOnce() -> StreamEvent<S>) {
        if let Some(sink) = &self.sink
            && sink.wants(mode)
        {
            sink.send(event());
        }
    }

    /// `Start`: turns the input into the checkpoint the run starts from, storing what
    /// it must.
    async fn start(&mut self, input: Input<S>) -> Result<Current<S>, RunError> {
        let head = self.load(None).await?;
        let current = match input {
            Input::Update(update) => self.write_input(head, update, None).await?,
            Input::Continue => {
                let head = head.ok_or_else(|| RunError::UnknownThread {
                    thread: self.thread.to_string(),
                })?;
                match self.cfg.checkpoint_id {
                    Some(target) if target != head.checkpoint.id => self.fork(target, head).await?,
                    _ => head,
                }
            }
            Input::Command(command) => self.start_command(head, command).await?,
        };
        if !current.created_here {
            self.emit(StreamMode::Values, || StreamEvent::Values {
                values: current.state.clone(),
            });
        }
        Ok(current)
    }

    /// Writes the checkpoint of new input (applied through the reducers on top of
    /// `base`, or of the default state on a new thread).
    pub(crate) async fn write_input(
        &self,
        base: Option<Current<S>>,
        mut update: S::Update,
        next: Option<Vec<TaskSpec>>,
    ) -> Result<Current<S>, RunError> {
        let pieces: Pieces = encode_given::<S>("input", &mut update)?;
        let base = base.map(|c| (c.checkpoint, c.state));
        let expected_head = base.as_ref().map(|(c, _)| c.id);
        let mut draft = Draft::input(base);
        draft.apply(&Arc::from("input"), update, &pieces)?;
        let next = match next {
            Some(n) => n,
            None => self.graph.topology.entry(draft.state())?,
        };
        let (current, blobs) = Current::made(
            draft.finish(&self.thread, next, self.cfg.metadata.clone())?,
            true,
        );
        self.put(&current, blobs, expected_head, Vec::new()).await?;
        Ok(current)
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
        let mut metadata = old.checkpoint.metadata.clone();
        metadata.extend(self.cfg.metadata.clone());
        let draft = Draft::fork(old.checkpoint, old.state, head.checkpoint.id);
        let next = draft.base_next();
        let (current, blobs) = Current::made(draft.finish(&self.thread, next, metadata)?, false);
        self.put(&current, blobs, Some(head.checkpoint.id), Vec::new())
            .await?;
        Ok(current)
    }
}
