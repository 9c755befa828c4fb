//! Breakpoints, get_state, history, update_state and time travel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use hitl_runtime::checkpoint::{CheckpointSource, ListFilter};
use hitl_runtime::{
    Command, CompiledGraph, END, InMemorySaver, NodeContext, RunConfig, RunError, RunStatus, START,
    StateGraph,
};
use serde_json::{Value, json};

use crate::interrupts::{Log, LogUpdate};

fn entry(text: impl Into<String>) -> LogUpdate {
    LogUpdate::default().log(vec![text.into()])
}

/// x -> y -> z, counting runs of each.
fn xyz(runs: Arc<[AtomicUsize; 3]>) -> (StateGraph<Log>, [hitl_runtime::NodeHandle<Log>; 3]) {
    let mut g = StateGraph::<Log>::new();
    let mut handles = Vec::new();
    for (i, name) in ["x", "y", "z"].into_iter().enumerate() {
        let r = runs.clone();
        handles.push(g.add_node(name, move |_, _| {
            let r = r.clone();
            async move {
                r[i].fetch_add(1, SeqCst);
                Ok(entry(name))
            }
        }));
    }
    let [x, y, z] = [handles[0], handles[1], handles[2]];
    g.add_edge(START, x);
    g.add_edge(x, y);
    g.add_edge(y, z);
    g.add_edge(z, END);
    (g, [x, y, z])
}

#[tokio::test]
async fn static_breakpoints_pause_around_nodes_and_continue_with_none() {
    let runs = Arc::new([0, 0, 0].map(AtomicUsize::new));
    let (g, [_, y, z]) = xyz(runs.clone());
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .interrupt_before([y])
        .interrupt_after([z])
        .build()
        .unwrap();
    let cfg = RunConfig::thread("bp");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert_eq!(out.status, RunStatus::Breakpoint);
    assert_eq!(out.next, ["y"]);
    assert!(out.interrupts.is_empty());
    assert_eq!(out.values.log, ["x"]);
    let state = app.get_state(&cfg).await.unwrap();
    assert!(state.interrupts.is_empty());
    assert_eq!(state.next, ["y"]);
    // A resume is not how a breakpoint continues.
    assert!(app.invoke(Command::resume("go"), &cfg).await.is_err());
    // z's only successor is END, so interrupt_after(z) does not pause.
    let out = app.invoke(None, &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["x", "y", "z"]);
    assert_eq!(runs.each_ref().map(|r| r.load(SeqCst)), [1, 1, 1]);
}

#[tokio::test]
async fn breakpoints_can_be_set_per_run_with_handles() {
    let (g, _) = xyz(Arc::new([0, 0, 0].map(AtomicUsize::new)));
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    // The same kind of argument as at compile time: a handle (here looked up by name).
    let x = app.node("x").unwrap();
    assert!(app.node("nope").is_none());
    let cfg = RunConfig::thread("bp-run").interrupt_after([x]);
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert_eq!(out.status, RunStatus::Breakpoint);
    assert_eq!(out.next, ["y"]);
    let out = app
        .invoke(None, &RunConfig::thread("bp-run"))
        .await
        .unwrap();
    assert!(out.is_done());
    // A handle of another graph is refused before anything runs.
    let (_, [_, other_y, _]) = xyz(Arc::new([0, 0, 0].map(AtomicUsize::new)));
    let err = app
        .invoke(
            Log::default(),
            &RunConfig::thread("bp-bad").interrupt_before([other_y]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node handle #1 belongs to another graph; handles are only valid in the graph that \
         created them (look one up by name with `CompiledGraph::node`)"
    );
    assert!(matches!(
        app.get_state(&RunConfig::thread("bp-bad")).await,
        Err(RunError::UnknownThread { .. })
    ));
}

/// pre -> ask (interrupts) -> post
fn ask_graph(post_runs: Arc<AtomicUsize>) -> (CompiledGraph<Log>, hitl_runtime::NodeHandle<Log>) {
    let mut g = StateGraph::<Log>::new();
    let pre = g.add_node("pre", |_, _| async { Ok(entry("pre")) });
    let ask = g.add_node("ask", |_, cx: NodeContext| async move {
        let v: Value = cx.interrupt(json!("name?")).await?;
        Ok(entry(format!("ask:{}", v.as_str().unwrap_or("?"))))
    });
    let post = g.add_node("post", move |_, _| {
        let r = post_runs.clone();
        async move {
            r.fetch_add(1, SeqCst);
            Ok(entry("post"))
        }
    });
    g.add_edge(START, pre);
    g.add_edge(pre, ask);
    g.add_edge(ask, post);
    g.add_edge(post, END);
    (
        g.compile()
            .checkpointer(InMemorySaver::new())
            .build()
            .unwrap(),
        ask,
    )
}

#[tokio::test]
async fn update_state_as_the_interrupted_node_skips_it() {
    let post_runs = Arc::new(AtomicUsize::new(0));
    let (app, ask) = ask_graph(post_runs.clone());
    let cfg = RunConfig::thread("upd");
    app.invoke(Log::default(), &cfg).await.unwrap();
    let new_cfg = app
        .update_state(&cfg, entry("manual"), Some(ask))
        .await
        .unwrap();
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(Some(state.checkpoint_id), new_cfg.checkpoint_id());
    assert_eq!(state.source, CheckpointSource::Update);
    assert_eq!(state.next, ["post"]);
    assert!(state.interrupts.is_empty());
    assert_eq!(state.values.log, ["pre", "manual"]);
    let out = app.invoke(None, &cfg).await.unwrap();
    assert_eq!(out.values.log, ["pre", "manual", "post"]);
    assert_eq!(post_runs.load(SeqCst), 1);
}

#[tokio::test]
async fn update_state_without_a_node_keeps_the_scheduled_tasks() {
    let (app, _) = ask_graph(Arc::new(AtomicUsize::new(0)));
    let cfg = RunConfig::thread("upd-keep");
    let before = app.invoke(Log::default(), &cfg).await.unwrap();
    app.update_state(&cfg, entry("note"), None).await.unwrap();
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.next, ["ask"]);
    assert!(
        state.interrupts.is_empty(),
        "a new checkpoint has no pending interrupts yet"
    );
    let out = app.invoke(None, &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert_ne!(
        out.interrupts[0].id, before.interrupts[0].id,
        "new checkpoint, new id"
    );
    let out = app.invoke(Command::resume("Ann"), &cfg).await.unwrap();
    assert_eq!(out.values.log, ["pre", "note", "ask:Ann", "post"]);
}

#[tokio::test]
async fn time_travel_forks_from_an_older_checkpoint_and_keeps_the_old_branch() {
    let (app, _) = ask_graph(Arc::new(AtomicUsize::new(0)));
    let cfg = RunConfig::thread("tt");
    app.invoke(Log::default(), &cfg).await.unwrap();
    let done = app.invoke(Command::resume("first"), &cfg).await.unwrap();
    assert_eq!(done.values.log, ["pre", "ask:first", "post"]);

    let history = app.get_state_history(&cfg).await.unwrap();
    let sources: Vec<_> = history
        .iter()
        .map(|s| (s.step, s.source, s.next.clone()))
        .collect();
    assert_eq!(
        sources,
        [
            (2, CheckpointSource::Loop, vec![]),
            (1, CheckpointSource::Loop, vec!["post".to_string()]),
            (0, CheckpointSource::Loop, vec!["ask".to_string()]),
            (-1, CheckpointSource::Input, vec!["pre".to_string()]),
        ]
    );
    let before_ask = &history[2];
    assert_eq!(before_ask.values.log, ["pre"]);

    let out = app.invoke(None, &before_ask.config).await.unwrap();
    assert!(out.is_interrupted(), "ask asks again on the fork");
    let head = app.get_state(&cfg).await.unwrap();
    assert_eq!(head.source, CheckpointSource::Fork);
    assert_eq!(head.parent_checkpoint_id, Some(before_ask.checkpoint_id));
    let out = app.invoke(Command::resume("second"), &cfg).await.unwrap();
    assert_eq!(out.values.log, ["pre", "ask:second", "post"]);

    let history = app.get_state_history(&cfg).await.unwrap();
    assert_eq!(history.len(), 4 + 3, "both branches are in history");
    assert!(
        history
            .iter()
            .any(|s| s.values.log == ["pre", "ask:first", "post"])
    );
    assert_eq!(history[0].values.log, ["pre", "ask:second", "post"]);
}

#[tokio::test]
async fn history_filters_and_limits() {
    let (app, _) = ask_graph(Arc::new(AtomicUsize::new(0)));
    let cfg = RunConfig::thread("hist").with_metadata("user", "ann");
    app.invoke(Log::default(), &cfg).await.unwrap();
    app.invoke(Command::resume("x"), &RunConfig::thread("hist"))
        .await
        .unwrap();
    let all = app.get_state_history(&cfg).await.unwrap();
    assert_eq!(all.len(), 4);
    let limited = app
        .get_state_history_filtered(
            &cfg,
            &ListFilter {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|s| s.checkpoint_id).collect::<Vec<_>>(),
        all[..2].iter().map(|s| s.checkpoint_id).collect::<Vec<_>>()
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("user".into(), json!("ann"));
    let tagged = app
        .get_state_history_filtered(
            &cfg,
            &ListFilter {
                metadata,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tagged.len(), 2, "only the first run carried the metadata");
    let before = app
        .get_state_history_filtered(
            &cfg,
            &ListFilter {
                before: Some(all[1].checkpoint_id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(before.len(), 2);
    // get_state at an older checkpoint reads that checkpoint.
    let old = app.get_state(&all[3].config).await.unwrap();
    assert_eq!(old.checkpoint_id, all[3].checkpoint_id);
    assert!(old.values.log.is_empty());
}

#[tokio::test]
async fn new_input_on_a_paused_thread_starts_over_from_start() {
    let (app, _) = ask_graph(Arc::new(AtomicUsize::new(0)));
    let cfg = RunConfig::thread("restart");
    app.invoke(Log::default(), &cfg).await.unwrap();
    let out = app.invoke(entry("again"), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.values.log, ["pre", "again", "pre"]);
}

#[tokio::test]
async fn a_step_whose_tasks_finished_before_a_crash_is_not_done_and_is_not_re_run() {
    let runs = Arc::new([0, 0, 0].map(AtomicUsize::new));
    let (g, [_, y, _]) = xyz(runs.clone());
    let saver = InMemorySaver::new();
    let app = g
        .compile()
        .checkpointer(saver.clone())
        .interrupt_before([y])
        .build()
        .unwrap();
    let cfg = RunConfig::thread("crashed");
    app.invoke(Log::default(), &cfg).await.unwrap();
    let paused = app.get_state(&cfg).await.unwrap();
    // Simulate a process that ran `y`, stored its result, and died before the barrier.
    use hitl_runtime::Checkpointer;
    use hitl_runtime::checkpoint::{PendingWrite, WriteKind};
    saver
        .put_writes(
            "crashed",
            "",
            paused.checkpoint_id,
            vec![PendingWrite {
                task_id: paused.tasks[0].id,
                idx: 0,
                kind: WriteKind::Result,
                value: serde_json::value::to_raw_value(&json!({"update": {"log": ["y (stored)"]}}))
                    .unwrap(),
            }],
        )
        .await
        .unwrap();
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(
        state.next,
        ["y"],
        "the step is not applied yet, so the thread is not done"
    );
    assert_eq!(state.values.log, ["x", "y (stored)"]);
    let out = app.invoke(None, &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["x", "y (stored)", "z"]);
    assert_eq!(
        runs[1].load(SeqCst),
        0,
        "the finished task was not run again"
    );
}
