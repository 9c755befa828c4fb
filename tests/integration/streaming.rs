//! Stream modes, and the one interrupt event every mode shares.

use std::sync::Arc;

use hitl_runtime::{
    Command, END, InMemorySaver, NodeContext, RunConfig, START, StateGraph, StreamEvent,
    StreamMode, StreamModes,
};
use serde_json::json;

use crate::common::{Redactor, collect_stream, log_stream, render};
use crate::interrupts::{Log, LogUpdate};

fn entry(text: impl Into<String>) -> LogUpdate {
    LogUpdate::default().log(vec![text.into()])
}

fn graph() -> hitl_runtime::CompiledGraph<Log> {
    let mut g = StateGraph::<Log>::new();
    let pre = g.add_node("pre", |_, cx: NodeContext| async move {
        cx.writer().write(json!({"progress": "pre started"}));
        Ok(entry("pre"))
    });
    let ask = g.add_node("ask", |_, cx: NodeContext| async move {
        cx.writer().write(json!({"progress": "asking"}));
        let v = cx.interrupt(json!("name?")).await?;
        Ok(entry(format!("ask:{}", v.as_str().unwrap_or("?"))))
    });
    let post = g.add_node("post", |_, _| async { Ok(entry("post")) });
    g.add_edge(START, pre);
    g.add_edge(pre, ask);
    g.add_edge(ask, post);
    g.add_edge(post, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn values_mode_ends_with_the_state_and_the_interrupt_and_resume_starts_with_the_state() {
    let app = graph();
    let cfg = RunConfig::thread("values");
    let mut r = Redactor::default();
    let first = log_stream(app.stream(Log::default(), &cfg, StreamMode::Values), &mut r).await;
    let second = log_stream(
        app.stream(Command::resume("Ann"), &cfg, StreamMode::Values),
        &mut r,
    )
    .await;
    insta::assert_snapshot!(format!("{first}\n-- resume\n{second}"), @r#"
    values {"log":["pre"]}
    interrupt [<id1> ask "name?"]
    -- resume
    values {"log":["pre"]}
    values {"log":["pre","ask:Ann"]}
    values {"log":["pre","ask:Ann","post"]}
    "#);
}

#[tokio::test]
async fn updates_custom_tasks_and_checkpoints_modes() {
    let app = graph();
    let cfg = RunConfig::thread("all");
    let modes =
        StreamMode::Updates | StreamMode::Custom | StreamMode::Tasks | StreamMode::Checkpoints;
    let mut r = Redactor::default();
    let first = log_stream(app.stream(Log::default(), &cfg, modes), &mut r).await;
    let second = log_stream(app.stream(Command::resume("Ann"), &cfg, modes), &mut r).await;
    insta::assert_snapshot!(format!("{first}\n-- resume\n{second}"), @r#"
    checkpoint step -1 Input next=["pre"]
    task start pre (step 0)
    custom pre: {"progress":"pre started"}
    update pre: {"log":["pre"]}
    task end pre: finished {"log":["pre"]}
    checkpoint step 0 Loop next=["ask"]
    task start ask (step 1)
    custom ask: {"progress":"asking"}
    task end ask: interrupted <id1>
    interrupt [<id1> ask "name?"]
    -- resume
    task start ask (step 1)
    custom ask: {"progress":"asking"}
    update ask: {"log":["ask:Ann"]}
    task end ask: finished {"log":["ask:Ann"]}
    checkpoint step 1 Loop next=["post"]
    task start post (step 2)
    update post: {"log":["post"]}
    task end post: finished {"log":["post"]}
    checkpoint step 2 Loop next=[]
    "#);
}

#[tokio::test]
async fn the_interrupt_event_is_identical_in_every_mode() {
    let modes: Vec<StreamModes> = vec![
        StreamModes::NONE,
        StreamMode::Values.into(),
        StreamMode::Updates.into(),
        StreamMode::Custom.into(),
        StreamMode::Tasks.into(),
        StreamMode::Checkpoints.into(),
        StreamMode::Debug.into(),
        StreamMode::Messages.into(),
        StreamMode::Values | StreamMode::Updates | StreamMode::Messages,
    ];
    let mut seen = Vec::new();
    for (i, mode) in modes.into_iter().enumerate() {
        let app = graph();
        let cfg = RunConfig::thread(format!("mode-{i}"));
        let (events, error) = collect_stream(app.stream(Log::default(), &cfg, mode)).await;
        assert!(error.is_none());
        let interrupts: Vec<String> = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Interrupt { .. }))
            .map(render)
            .collect();
        assert_eq!(
            interrupts.len(),
            1,
            "mode {mode:?}: exactly one interrupt event"
        );
        assert!(
            matches!(events.last(), Some(StreamEvent::Interrupt { .. })),
            "mode {mode:?}: the interrupt is the last event"
        );
        seen.push(Redactor::default().redact(&interrupts[0]));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
}

#[tokio::test]
async fn a_failed_run_ends_its_stream_with_the_error() {
    let mut g = StateGraph::<Log>::new();
    let bad = g.add_node("bad", |_, _| async {
        Err::<LogUpdate, _>(hitl_runtime::NodeError::msg("no"))
    });
    g.add_edge(START, bad);
    g.add_edge(bad, END);
    let app = g.compile().build().unwrap();
    let log = log_stream(
        app.stream(Log::default(), &RunConfig::default(), StreamMode::Updates),
        &mut Redactor::default(),
    )
    .await;
    assert_eq!(log, "error: node `bad` failed: no");
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_run() {
    let started = Arc::new(tokio::sync::Notify::new());
    let mut g = StateGraph::<Log>::new();
    let s = started.clone();
    let hang = g.add_node("hang", move |_, _| {
        let s = s.clone();
        async move {
            s.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    g.add_edge(START, hang);
    g.add_edge(hang, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("drop");
    let stream = app.stream(Log::default(), &cfg, StreamMode::Updates);
    started.notified().await;
    drop(stream);
    // The thread is still at its input checkpoint, with nothing stored for the task.
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.next, ["hang"]);
    assert!(state.tasks[0].result.is_none() && state.tasks[0].error.is_none());
}
