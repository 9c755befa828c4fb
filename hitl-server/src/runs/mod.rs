//! Runs: what a client asks for, admission (multitask strategies, strict resumes),
//! execution into the event log, cancellation and rollback.
//!
//! A run's life: **admitted** by a request (validated; a resume is checked by the
//! runtime before anything is recorded), **recorded** as running (its thread was
//! free) or pending (queued behind another run), **driven** by a tokio task that turns
//! the graph's events into SSE events, and **ended**: the run and thread records get
//! their final status *before* the event log closes, so a client that reads the run
//! after its stream closed sees the end.

mod events;
mod request;

use events::*;
pub(crate) use request::*;

use std::sync::Arc;

use futures_util::StreamExt;
use hitl_runtime::checkpoint::Prune;
use hitl_runtime::{
    CheckpointId, InterruptId, PendingInterrupt, RunConfig, RunError, StreamMode, StreamModes,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Identity;
use crate::error::{ApiError, run_error_json};
use crate::graph::{
    CallError, JsonCommand, JsonEvent, JsonInput, JsonResume, JsonRunOptions, JsonRunStream,
    JsonSnapshot, NodeSelection,
};
use crate::live::{CancelAction, Ending, Live};
use crate::server::{Inner, Registered};
use crate::store::{
    Admission, IfBusy, IfExists, MultitaskStrategy, RunRecord, RunStatus, ThreadRecord,
    ThreadStatus, ThreadUpdate,
};
use crate::wire;

/// What a worker needs to drive a run.
struct Exec {
    graph_id: String,
    assistant_id: String,
    graph: Arc<dyn crate::graph::JsonGraph>,
    run_id: String,
    thread_id: String,
    spec: RunSpec,
    cfg: RunConfig,
    /// The thread's head before the run, for a rollback.
    before: Option<CheckpointId>,
}

fn run_config(run: &RunRecord, spec: &RunSpec, live: &Live) -> RunConfig {
    let mut cfg = RunConfig::thread(run.thread_id.clone()).cancellation(live.cancel.clone());
    for (k, v) in &run.metadata {
        cfg = cfg.with_metadata(k.clone(), v.clone());
    }
    cfg = cfg
        .with_metadata("run_id", run.run_id.clone())
        .with_metadata("thread_id", run.thread_id.clone());
    if let Some(limit) = spec.recursion_limit {
        cfg = cfg.recursion_limit(limit);
    }
    if let Some(c) = spec.checkpoint {
        cfg = cfg.at_checkpoint(c);
    }
    if let Some(ctx) = &spec.context {
        cfg = cfg.context(ctx.clone());
    }
    cfg
}

async fn head_of(
    graph: &dyn crate::graph::JsonGraph,
    thread_id: &str,
) -> Result<Option<JsonSnapshot>, ApiError> {
    Ok(graph.state(&RunConfig::thread(thread_id)).await?)
}

/// A run accepted by [`admit`].
pub(crate) struct Admitted {
    pub(crate) run: RunRecord,
    pub(crate) live: Arc<Live>,
}

/// Admits a run: checks it, applies the multitask strategy, validates a resume with
/// the runtime (a refused resume stores nothing and records no run), records it, and
/// starts it or queues it.
pub(crate) async fn admit(
    inner: &Arc<Inner>,
    identity: &Identity,
    thread_id: &str,
    req: RunCreate,
) -> Result<Admitted, ApiError> {
    let reg = inner.assistant(&req.assistant_id)?;
    let strategy: MultitaskStrategy = match &req.multitask_strategy {
        None => MultitaskStrategy::default(),
        Some(s) => s.parse().map_err(ApiError::Unprocessable)?,
    };
    let create_thread = match req.if_not_exists.as_deref() {
        None | Some("reject") => false,
        Some("create") => true,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "if_not_exists must be `create` or `reject`, got `{other}`"
            )));
        }
    };
    if let Some(d) = req.on_disconnect.as_deref()
        && !matches!(d, "cancel" | "continue")
    {
        return Err(ApiError::Unprocessable(format!(
            "on_disconnect must be `cancel` or `continue`, got `{d}`"
        )));
    }
    let (_, mode_names) = Modes::parse(req.stream_mode.as_ref())?;
    let mut metadata = req.metadata.clone().unwrap_or_default();
    metadata.insert("graph_id".into(), json!(reg.graph_id));
    metadata.insert("assistant_id".into(), json!(reg.assistant_id));
    metadata.insert("user_id".into(), json!(identity.id));
    let mut config = req.config.clone().unwrap_or_else(|| json!({}));
    if let Value::Object(c) = &mut config {
        c.insert("metadata".into(), Value::Object(metadata.clone()));
    }
    let kwargs = kwargs_of(&req, &mode_names, config);
    let spec = RunSpec::from_kwargs(reg, &kwargs, Some(identity))?;

    let thread = match inner.store.get_thread(thread_id).await? {
        Some(t) => t,
        None if create_thread => {
            inner
                .store
                .create_thread(
                    ThreadRecord::new(thread_id, Map::new()),
                    IfExists::DoNothing,
                )
                .await?
        }
        None => return Err(ApiError::thread_not_found(thread_id)),
    };
    if let Some(bound) = &thread.graph_id
        && bound != &reg.graph_id
    {
        return Err(ApiError::Conflict(format!(
            "thread {thread_id} holds the state of graph `{bound}`; it cannot run graph `{}`. Use a new thread",
            reg.graph_id
        )));
    }

    let _admission = inner.admission(thread_id).lock().await;
    let mut active = inner.store.active_runs(thread_id).await?;
    if !active.is_empty() {
        match strategy {
            MultitaskStrategy::Reject => return Err(ApiError::busy()),
            MultitaskStrategy::Enqueue if spec.has_resume() => {
                return Err(ApiError::Conflict(format!(
                    "Thread {thread_id} is busy with run {}; a resume answers the interrupts pending now, so it cannot wait in the queue. Resume again when that run has finished",
                    active[0].run_id
                )));
            }
            MultitaskStrategy::Interrupt | MultitaskStrategy::Rollback => {
                let action = if strategy == MultitaskStrategy::Rollback {
                    CancelAction::Rollback
                } else {
                    CancelAction::Interrupt
                };
                for run in &active {
                    cancel(inner, run, action, true).await?;
                }
                active = inner.store.active_runs(thread_id).await?;
                if !active.is_empty() {
                    return Err(ApiError::busy());
                }
            }
            _ => {}
        }
    }
    let idle = active.is_empty();

    let before = head_of(&*reg.graph, thread_id).await?;
    if matches!(spec.input, JsonInput::Continue) && before.is_none() {
        return Err(ApiError::Conflict(format!(
            "thread {thread_id} has never run, so there is nothing to continue; start it with an input"
        )));
    }
    let before = before.map(|s| s.checkpoint_id);

    let now = crate::time::now_us();
    let run = RunRecord {
        run_id: uuid::Uuid::now_v7().to_string(),
        thread_id: thread_id.to_owned(),
        assistant_id: reg.assistant_id.clone(),
        graph_id: reg.graph_id.clone(),
        metadata,
        status: if idle {
            RunStatus::Running
        } else {
            RunStatus::Pending
        },
        kwargs,
        multitask_strategy: strategy,
        identity: Some(identity.clone()),
        created_at: now,
        updated_at: now,
    };
    let live = Live::new(&run.run_id, spec.resumable);
    let cfg = run_config(&run, &spec, &live);

    // The run is recorded before anything runs: a process that dies after the runtime
    // stored a resume's answers leaves a run that another process continues.
    let admission = inner
        .store
        .insert_run(
            &run,
            if idle {
                IfBusy::Reject
            } else {
                IfBusy::Enqueue
            },
        )
        .await?;
    if admission == Admission::Busy {
        return Err(ApiError::busy());
    }
    // A command on a free thread starts now: the runtime validates a resume before it
    // stores anything, and its first event says the answers were accepted. A refused
    // one leaves no run behind.
    let mut started = None;
    if admission == Admission::Started && matches!(spec.input, JsonInput::Command(_)) {
        match first_event(&*reg.graph, &spec.input, &cfg, &spec.options).await {
            Ok(s) => started = Some(s),
            Err(e) => {
                inner.store.delete_run(&run.run_id).await?;
                return Err(e.into());
            }
        }
    }
    let run = match admission {
        Admission::Busy => return Err(ApiError::busy()),
        Admission::Started => RunRecord {
            status: RunStatus::Running,
            ..run
        },
        _ => RunRecord {
            status: RunStatus::Pending,
            ..run
        },
    };
    inner.lives.insert(live.clone());
    let mut bind = Map::new();
    bind.insert("graph_id".into(), json!(reg.graph_id));
    bind.insert("assistant_id".into(), json!(reg.assistant_id));
    let mut update = ThreadUpdate::default()
        .metadata(bind)
        .graph(reg.graph_id.clone());
    if admission == Admission::Started {
        // A queued run leaves the status alone: the thread is busy with the run ahead
        // of it, which may even end (and settle the status) meanwhile.
        update = update.status(ThreadStatus::Busy);
    }
    inner.store.update_thread(thread_id, update).await?;
    inner.ensure_worker();
    if admission == Admission::Started {
        let exec = Exec {
            graph_id: reg.graph_id.clone(),
            assistant_id: reg.assistant_id.clone(),
            graph: reg.graph.clone(),
            run_id: run.run_id.clone(),
            thread_id: thread_id.to_owned(),
            spec,
            cfg,
            before,
        };
        supervise(inner.clone(), live.clone(), exec, started);
    } else {
        inner.queue.wake(thread_id).await?;
    }
    Ok(Admitted { run, live })
}

/// Starts a run and waits for its first event: the runtime checks a resume before it
/// stores anything, so an error here means nothing was stored.
async fn first_event(
    graph: &dyn crate::graph::JsonGraph,
    input: &JsonInput,
    cfg: &RunConfig,
    options: &JsonRunOptions,
) -> Result<(JsonRunStream, Vec<JsonEvent>), CallError> {
    let mut stream = graph.stream(input.clone(), cfg, options)?;
    let prelude = match stream.next().await {
        Some(Err(e)) => return Err(e),
        Some(Ok(first)) => vec![first],
        None => Vec::new(),
    };
    Ok((stream, prelude))
}

/// Starts the oldest pending run of a thread, if the thread is free.
pub(crate) async fn start_next(inner: &Arc<Inner>, thread_id: &str) {
    let run = match inner.store.claim_next(thread_id).await {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(thread = thread_id, error = %e, "could not claim a queued run");
            return;
        }
    };
    let live = inner.lives.ensure(&run.run_id, resumable(&run));
    match prepare(inner, &run, &live).await {
        Ok(exec) => supervise(inner.clone(), live, exec, None),
        Err(e) => fail_unstarted(inner, &run, &live, &e).await,
    }
}

fn resumable(run: &RunRecord) -> bool {
    run.kwargs
        .get("resumable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// What a worker needs to drive a claimed run; the thread is recorded as busy.
async fn prepare(inner: &Arc<Inner>, run: &RunRecord, live: &Live) -> Result<Exec, ApiError> {
    let reg = inner.graph(&run.graph_id).ok_or_else(|| {
        ApiError::Internal(format!(
            "graph `{}` is no longer registered on this server",
            run.graph_id
        ))
    })?;
    let spec = RunSpec::from_kwargs(reg, &run.kwargs, run.identity.as_ref())?;
    let before = head_of(&*reg.graph, &run.thread_id)
        .await?
        .map(|s| s.checkpoint_id);
    inner
        .store
        .update_thread(
            &run.thread_id,
            ThreadUpdate::default().status(ThreadStatus::Busy),
        )
        .await?;
    Ok(Exec {
        graph_id: reg.graph_id.clone(),
        assistant_id: reg.assistant_id.clone(),
        graph: reg.graph.clone(),
        cfg: run_config(run, &spec, live),
        run_id: run.run_id.clone(),
        thread_id: run.thread_id.clone(),
        spec,
        before,
    })
}

/// A claimed run that cannot start fails, and the thread's next run may go.
async fn fail_unstarted(inner: &Arc<Inner>, run: &RunRecord, live: &Live, e: &ApiError) {
    live.push("metadata", &json!({"run_id": run.run_id, "attempt": 1}));
    let error = json!({"error": "InvalidRun", "message": e.to_string()});
    live.push("error", &error);
    if let Err(e) = inner
        .store
        .set_run_status(&run.run_id, RunStatus::Error)
        .await
    {
        tracing::error!(run = %run.run_id, error = %e, "could not record a run's failure");
    }
    settle_thread(
        inner,
        &run.thread_id,
        &run.run_id,
        ThreadStatus::Error,
        Some(error.clone()),
    )
    .await;
    live.finish(Ending {
        body: json!({ "__error__": error }),
    });
    inner.lives.ended(&run.run_id);
    let _ = inner.queue.wake(&run.thread_id).await;
}

/// Continues a run whose process stopped (taken over with
/// [`RunStore::claim_orphans`](crate::RunStore::claim_orphans)) from its thread's last
/// checkpoint: what the run already wrote is not done again, and tool calls that
/// finished are not run again. A run that had not written anything yet starts with
/// its own input; a resume whose answers were already stored continues instead.
pub(crate) async fn continue_orphan(inner: Arc<Inner>, run: RunRecord) {
    tracing::warn!(run = %run.run_id, thread = %run.thread_id, "taking over a run whose process stopped");
    let live = inner.lives.ensure(&run.run_id, resumable(&run));
    let mut exec = match prepare(&inner, &run, &live).await {
        Ok(exec) => exec,
        Err(e) => return fail_unstarted(&inner, &run, &live, &e).await,
    };
    let wrote = match exec
        .graph
        .state(&RunConfig::thread(run.thread_id.clone()))
        .await
    {
        Ok(Some(head)) => head.metadata.get("run_id") == Some(&json!(run.run_id)),
        _ => false,
    };
    if wrote {
        exec.spec.input = JsonInput::Continue;
    }
    // The dead process may still hold the thread's run lease for a while.
    let patience = inner.store.lease().unwrap_or_default() * 4 + std::time::Duration::from_secs(5);
    let started_at = std::time::Instant::now();
    loop {
        match first_event(
            &*exec.graph,
            &exec.spec.input,
            &exec.cfg,
            &exec.spec.options,
        )
        .await
        {
            Ok(started) => return supervise(inner.clone(), live, exec, Some(started)),
            Err(CallError::Run(RunError::Resume(_)))
                if !matches!(exec.spec.input, JsonInput::Continue) =>
            {
                // Its answers were stored before the process stopped.
                exec.spec.input = JsonInput::Continue;
            }
            Err(CallError::Run(RunError::ThreadBusy { .. })) if started_at.elapsed() < patience => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => {
                let e = ApiError::from(e);
                return fail_unstarted(&inner, &run, &live, &e).await;
            }
        }
    }
}

/// Drives a run on its own task. If that task panics (a bug in this crate; node
/// panics are task failures in the runtime), the run is recorded as failed and its
/// streams close instead of hanging.
fn supervise(
    inner: Arc<Inner>,
    live: Arc<Live>,
    exec: Exec,
    started: Option<(JsonRunStream, Vec<JsonEvent>)>,
) {
    let (run_id, thread_id) = (exec.run_id.clone(), exec.thread_id.clone());
    let driving = tokio::spawn(drive(inner.clone(), live.clone(), exec, started));
    tokio::spawn(async move {
        let Err(panic) = driving.await else { return };
        tracing::error!(run = %run_id, error = %panic, "the task driving a run panicked");
        let error = json!({"error": "InternalError", "message": format!("the server failed while driving this run: {panic}")});
        if let Err(e) = inner.store.set_run_status(&run_id, RunStatus::Error).await {
            tracing::error!(run = %run_id, error = %e, "could not record a run's failure");
        }
        settle_thread(
            &inner,
            &thread_id,
            &run_id,
            ThreadStatus::Error,
            Some(error.clone()),
        )
        .await;
        if !live.is_finished() {
            live.finish(Ending {
                body: json!({ "__error__": error }),
            });
        }
        inner.lives.ended(&run_id);
        let _ = inner.queue.wake(&thread_id).await;
    });
}

/// Runs a recorded run to its end.
async fn drive(
    inner: Arc<Inner>,
    live: Arc<Live>,
    exec: Exec,
    started: Option<(JsonRunStream, Vec<JsonEvent>)>,
) {
    live.push("metadata", &json!({"run_id": exec.run_id, "attempt": 1}));
    let mut tr = Translator {
        live: &live,
        exec: &exec,
        interrupts: Vec::new(),
        wrote: true,
    };
    let result: Result<(), CallError> = async {
        let (mut stream, prelude) = match started {
            Some(s) => s,
            None => {
                if live.cancel.is_cancelled() {
                    return Err(CallError::Run(RunError::Cancelled));
                }
                (
                    exec.graph
                        .stream(exec.spec.input.clone(), &exec.cfg, &exec.spec.options)?,
                    Vec::new(),
                )
            }
        };
        for ev in prelude {
            tr.on(ev);
        }
        while let Some(item) = stream.next().await {
            tr.on(item?);
        }
        Ok(())
    }
    .await;
    let ending = conclude(&inner, &live, &exec, &tr, result).await;
    live.finish(ending);
    let _ = inner.queue.wake(&exec.thread_id).await;
}

/// Records how a run ended and returns the body of `wait`/`join`.
async fn conclude(
    inner: &Arc<Inner>,
    live: &Live,
    exec: &Exec,
    tr: &Translator<'_>,
    result: Result<(), CallError>,
) -> Ending {
    let thread_id = &exec.thread_id;
    let head = RunConfig::thread(thread_id.clone());
    let result = match result {
        Ok(()) => exec
            .graph
            .state(&head)
            .await
            .map(|s| s.map(|s| (s.values, s.next))),
        Err(e) => Err(e),
    };
    let (run_status, thread_status, error, body) = match result {
        Ok(state) => {
            let (values, next) = state.unwrap_or((Value::Null, Vec::new()));
            tr.paused(&values);
            let body = if tr.interrupts.is_empty() {
                values
            } else {
                wire::values_with_interrupts(&values, &tr.interrupts)
            };
            let status = if next.is_empty() {
                ThreadStatus::Idle
            } else {
                ThreadStatus::Interrupted
            };
            (Some(RunStatus::Success), status, None, body)
        }
        Err(CallError::Run(RunError::Cancelled)) => {
            let rollback = live.cancel_action() == Some(CancelAction::Rollback);
            if rollback && let Err(e) = roll_back(exec).await {
                tracing::error!(run = %exec.run_id, error = %e, "rollback failed");
            }
            let next = match exec.graph.state(&head).await {
                Ok(Some(s)) => s.next,
                _ => Vec::new(),
            };
            let status = if next.is_empty() {
                ThreadStatus::Idle
            } else {
                ThreadStatus::Interrupted
            };
            let (run_status, error) = if rollback {
                (
                    None,
                    json!({"error": "UserRollback", "message": "the run was cancelled and rolled back (POST /threads/{thread_id}/runs/{run_id}/cancel?action=rollback, or a later run's multitask_strategy=rollback)"}),
                )
            } else {
                (
                    Some(RunStatus::Interrupted),
                    json!({"error": "UserInterrupt", "message": "the run was cancelled (POST /threads/{thread_id}/runs/{run_id}/cancel, or a later run's multitask_strategy=interrupt); continue the thread with a run whose input is null"}),
                )
            };
            let keep = (!rollback).then(|| error.clone());
            (run_status, status, keep, json!({ "__error__": error }))
        }
        Err(e) => {
            let error = run_error_json(&e);
            live.push("error", &error);
            (
                Some(RunStatus::Error),
                ThreadStatus::Error,
                Some(error.clone()),
                json!({ "__error__": error }),
            )
        }
    };
    // The thread first: a process that dies in between leaves the run running, and
    // the process that takes it over finds nothing left to do and settles both.
    settle_thread(inner, thread_id, &exec.run_id, thread_status, error).await;
    let stored = match run_status {
        Some(s) => inner.store.set_run_status(&exec.run_id, s).await,
        None => inner.store.delete_run(&exec.run_id).await,
    };
    if let Err(e) = stored {
        tracing::error!(run = %exec.run_id, error = %e, "could not record the end of a run");
    }
    if run_status.is_some() {
        inner.lives.ended(&exec.run_id);
    } else {
        inner.lives.remove(&exec.run_id);
    }
    Ending { body }
}

/// Records a thread's status after a run ended (still `busy` if another run is
/// queued).
async fn settle_thread(
    inner: &Arc<Inner>,
    thread_id: &str,
    run_id: &str,
    status: ThreadStatus,
    error: Option<Value>,
) {
    let others = match inner.store.active_runs(thread_id).await {
        Ok(runs) => runs.iter().any(|r| r.run_id != run_id),
        Err(_) => false,
    };
    let status = if others { ThreadStatus::Busy } else { status };
    let update = ThreadUpdate::default()
        .status(status)
        .error(error)
        .state_changed();
    if let Err(e) = inner.store.update_thread(thread_id, update).await {
        tracing::error!(thread = thread_id, error = %e, "could not record a thread's status");
    }
}

/// Undoes what a cancelled run wrote: the head before the run becomes the head again
/// (as a new checkpoint), and the run's own checkpoints are pruned. A run on a new
/// thread leaves no checkpoint.
async fn roll_back(exec: &Exec) -> Result<(), CallError> {
    let thread = RunConfig::thread(exec.thread_id.clone());
    let now = exec.graph.state(&thread).await?.map(|s| s.checkpoint_id);
    let Some(saver) = exec.graph.checkpointer() else {
        return Ok(());
    };
    match exec.before {
        None => {
            if now.is_some() {
                saver
                    .delete_thread(&exec.thread_id)
                    .await
                    .map_err(RunError::from)?;
            }
        }
        Some(before) if now != Some(before) => {
            exec.graph
                .update_state(&thread.at_checkpoint(before), Value::Null, None)
                .await?;
            saver
                .prune(&exec.thread_id, Prune::KeepHeadLineage)
                .await
                .map_err(RunError::from)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Cancels a run. A pending run ends at once; a running one stops at its next await
/// point. With `wait`, returns when it has ended.
pub(crate) async fn cancel(
    inner: &Arc<Inner>,
    run: &RunRecord,
    action: CancelAction,
    wait: bool,
) -> Result<(), ApiError> {
    let live = inner.lives.ensure(&run.run_id, resumable(run));
    live.request_cancel(action);
    let current = inner.store.get_run(&run.thread_id, &run.run_id).await?;
    if current.is_some_and(|r| r.status == RunStatus::Pending) {
        // Not started: it ends here. (If a worker claims it meanwhile, it finds the
        // cancellation and ends the same way.)
        match action {
            CancelAction::Interrupt => {
                inner
                    .store
                    .set_run_status(&run.run_id, RunStatus::Interrupted)
                    .await?;
            }
            CancelAction::Rollback => inner.store.delete_run(&run.run_id).await?,
        }
        let error =
            json!({"error": "UserInterrupt", "message": "the run was cancelled before it started"});
        live.finish(Ending {
            body: json!({ "__error__": error }),
        });
        inner.lives.ended(&run.run_id);
        inner.queue.wake(&run.thread_id).await?;
        return Ok(());
    }
    if wait {
        live.wait().await;
    }
    Ok(())
}
