//! Graph structure, routing, reducers and the executor's guarantees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use hitl_runtime::{
    Command, CompiledGraph, END, GraphError, InMemorySaver, Message, NodeContext, ReducerError,
    Route, RunConfig, RunError, START, State, StateGraph,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

fn add(total: &mut u64, n: u64) {
    *total += n;
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Flow {
    #[state(reducer = append)]
    log: Vec<String>,
    #[state(reducer = messages)]
    messages: Vec<Message>,
    #[state(reducer = add)]
    total: u64,
    step: u32,
}

fn log(text: &str) -> FlowUpdate {
    FlowUpdate::default().log(vec![text.to_string()])
}

#[test]
fn validation_reports_missing_entry_unreachable_nodes_and_dead_ends() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    g.add_edge(a, END);
    assert_eq!(g.compile().build().unwrap_err(), GraphError::NoEntry);

    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    let lonely = g.add_node("lonely", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_edge(a, END);
    g.add_edge(lonely, END);
    let err = g.compile().build().unwrap_err();
    assert_eq!(
        err,
        GraphError::Unreachable {
            node: "lonely".into()
        }
    );
    assert!(err.to_string().starts_with("node `lonely` is unreachable"));

    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    let b = g.add_node("b", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_edge(a, b);
    let err = g.compile().build().unwrap_err();
    assert_eq!(err, GraphError::DeadEnd { node: "b".into() });
    assert_eq!(
        err.to_string(),
        "node `b` has no outgoing edge: add `g.add_edge(b, END)` if the run ends there, or an edge to the next node"
    );
}

#[test]
fn names_must_be_unique_and_storable_and_handles_stay_in_their_graph() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    g.add_node("a", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_edge(a, END);
    assert_eq!(
        g.compile().build().unwrap_err(),
        GraphError::DuplicateNode { name: "a".into() }
    );

    for bad in ["", "__start__", "a:b", "a|b"] {
        let mut g = StateGraph::<Flow>::new();
        let n = g.add_node(bad, |_, _| async { Ok(()) });
        g.add_edge(START, n);
        g.add_edge(n, END);
        assert_eq!(
            g.compile().build().unwrap_err(),
            GraphError::InvalidName { name: bad.into() },
            "{bad:?}"
        );
    }

    let mut other = StateGraph::<Flow>::new();
    let foreign = other.add_node("x", |_, _| async { Ok(()) });
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_edge(a, foreign);
    assert!(matches!(
        g.compile().build().unwrap_err(),
        GraphError::ForeignNode { .. }
    ));
}

#[tokio::test]
async fn conditional_edges_route_on_the_updated_state() {
    let mut g = StateGraph::<Flow>::new();
    let inc = g.add_node("inc", |s: Arc<Flow>, _| async move {
        Ok(FlowUpdate::default()
            .step(s.step + 1)
            .log(vec![format!("inc{}", s.step + 1)]))
    });
    let done = g.add_node("done", |_, _| async { Ok(log("done")) });
    g.add_edge(START, inc);
    g.add_conditional_edges_to(inc, [inc, done], move |s: &Flow| {
        if s.step < 3 {
            Route::to(inc)
        } else {
            Route::to(done)
        }
    });
    g.add_edge(done, END);
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap();
    assert_eq!(out.values.log, ["inc1", "inc2", "inc3", "done"]);
}

#[tokio::test]
async fn a_route_to_an_undeclared_target_fails_the_run() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    let b = g.add_node("b", |_, _| async { Ok(()) });
    let c = g.add_node("c", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_conditional_edges_to(a, [b], move |_: &Flow| Route::to(c));
    g.add_edge(b, END);
    g.add_edge(c, END);
    g.add_edge(START, c);
    let app = g.compile().build().unwrap();
    let err = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidRoute { from, to, .. } if from == "a" && to == "c"),
        "{err}"
    );
}

#[tokio::test]
async fn routers_return_a_node_handle_or_end_as_they_are() {
    let mut g = StateGraph::<Flow>::new();
    let inc = g.add_node("inc", |s: Arc<Flow>, _| async move {
        Ok(FlowUpdate::default()
            .step(s.step + 1)
            .log(vec![format!("inc{}", s.step + 1)]))
    });
    let check = g.add_node("check", |_, _| async { Ok(log("check")) });
    let done = g.add_node("done", |_, _| async { Ok(log("done")) });
    g.add_edge(START, inc);
    // A node handle, as it is.
    g.add_conditional_edges_to(inc, [check], move |_: &Flow| check);
    // A node or END: `None` is END; the declared targets mix handles and END.
    g.add_conditional_edges_to(
        check,
        (inc, END),
        move |s: &Flow| {
            if s.step < 3 { Some(inc) } else { None }
        },
    );
    g.add_edge(START, done);
    // END, as it is.
    g.add_conditional_edges(done, |_: &Flow| END);
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap();
    assert_eq!(
        out.values.log,
        ["inc1", "done", "check", "inc2", "check", "inc3", "check"]
    );

    // `None` is a route to END, so END must be declared like any target.
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(()) });
    let b = g.add_node("b", |_, _| async { Ok(()) });
    g.add_edge(START, a);
    g.add_conditional_edges_to(a, [b], move |s: &Flow| (s.step > 0).then_some(b));
    g.add_edge(b, END);
    let app = g.compile().build().unwrap();
    let err = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidRoute { from, to, .. } if from == "a" && to == "END"),
        "{err}"
    );
}

#[tokio::test]
async fn command_goto_from_a_node_must_be_declared() {
    let mut g = StateGraph::<Flow>::new();
    let b = g.add_node("b", |_, _| async { Ok(log("b")) });
    let b2 = b;
    let a = g.add_node("a", move |_, _| async move {
        Ok(Command::<Flow>::update(log("a")).goto(b2))
    });
    g.add_edge(START, a);
    g.add_goto_targets(a, [b]);
    g.add_edge(b, END);
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap();
    assert_eq!(out.values.log, ["a", "b"]);

    // The same node without the declaration fails its task.
    let mut g = StateGraph::<Flow>::new();
    let b = g.add_node("b", |_, _| async { Ok(log("b")) });
    let b2 = b;
    let a = g.add_node("a", move |_, _| async move {
        Ok(Command::<Flow>::update(log("a")).goto(b2))
    });
    g.add_edge(START, a);
    g.add_edge(a, END);
    g.add_edge(START, b);
    g.add_edge(b, END);
    let app = g.compile().build().unwrap();
    let err = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not declare"), "{err}");
}

#[tokio::test]
async fn two_writes_to_a_last_value_channel_in_one_step_are_an_error() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(FlowUpdate::default().step(1)) });
    let b = g.add_node("b", |_, _| async { Ok(FlowUpdate::default().step(2)) });
    for n in [a, b] {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    let app = g.compile().build().unwrap();
    let err = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap_err();
    match err {
        RunError::Reducer(ReducerError::ConcurrentWrite {
            channel,
            first,
            second,
        }) => {
            assert_eq!(
                (channel, first.as_str(), second.as_str()),
                ("step", "a", "b")
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn a_step_that_fails_at_the_barrier_keeps_its_results_and_does_not_run_them_again() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut g = StateGraph::<Flow>::new();
    let (ra, rb) = (runs.clone(), runs.clone());
    let a = g.add_node("a", move |_, _| {
        ra.fetch_add(1, SeqCst);
        async { Ok(FlowUpdate::default().step(1)) }
    });
    let b = g.add_node("b", move |_, _| {
        rb.fetch_add(1, SeqCst);
        async {
            // Finishes last: its result would travel with the next checkpoint.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(FlowUpdate::default().step(2))
        }
    });
    for n in [a, b] {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("barrier");
    let first = app.invoke(Flow::default(), &cfg).await.unwrap_err();
    assert!(matches!(first, RunError::Reducer(_)), "{first}");
    assert_eq!(runs.load(SeqCst), 2);
    let snapshot = app.get_state(&cfg).await.unwrap();
    let finished: Vec<&str> = snapshot
        .tasks
        .iter()
        .filter(|t| t.result.is_some())
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(finished, ["a", "b"], "both results are stored");
    let again = app.invoke(None, &cfg).await.unwrap_err();
    assert_eq!(again.to_string(), first.to_string());
    assert_eq!(
        runs.load(SeqCst),
        2,
        "stored results are not computed again"
    );
}

#[tokio::test]
async fn updates_apply_in_task_order_whatever_order_tasks_finish_in() {
    let mut g = StateGraph::<Flow>::new();
    let slow = g.add_node("slow", |_, _| async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(log("slow").total(1))
    });
    let fast = g.add_node("fast", |_, _| async { Ok(log("fast").total(10)) });
    for n in [slow, fast] {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap();
    assert_eq!(out.values.log, ["slow", "fast"]);
    assert_eq!(out.values.total, 11, "the custom reducer folds both writes");
}

#[tokio::test]
async fn tasks_of_a_superstep_run_concurrently() {
    let mut g = StateGraph::<Flow>::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut nodes = Vec::new();
    for name in ["x", "y", "z"] {
        let b = barrier.clone();
        nodes.push(g.add_node(name, move |_, _| {
            let b = b.clone();
            // Each task waits for the other two: only concurrent tasks get past this.
            async move {
                b.wait().await;
                Ok(())
            }
        }));
    }
    for n in nodes {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    let app = g.compile().build().unwrap();
    let cfg = RunConfig::default();
    let run = app.invoke(Flow::default(), &cfg);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("tasks ran one after another")
        .unwrap();
}

#[tokio::test]
async fn the_messages_reducer_replaces_by_id_and_gives_ids_to_new_messages() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async {
        Ok(FlowUpdate::default().messages(vec![
            Message::user("hi").with_id("u1"),
            Message::assistant("draft").with_id("a1"),
        ]))
    });
    let b = g.add_node("b", |_, _| async {
        Ok(FlowUpdate::default().messages(vec![
            Message::assistant("final").with_id("a1"),
            Message::user("thanks"),
        ]))
    });
    g.add_edge(START, a);
    g.add_edge(a, b);
    g.add_edge(b, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("m");
    let out = app.invoke(Flow::default(), &cfg).await.unwrap();
    let texts: Vec<String> = out.values.messages.iter().map(Message::text).collect();
    assert_eq!(texts, ["hi", "final", "thanks"]);
    let new_id = out.values.messages[2].id().unwrap().to_owned();
    // The id was assigned before the write was stored, so the stored state agrees.
    let stored = app.get_state(&cfg).await.unwrap();
    assert_eq!(stored.values.messages[2].id(), Some(new_id.as_str()));
}

#[tokio::test]
async fn the_recursion_limit_stops_endless_loops() {
    let mut g = StateGraph::<Flow>::new();
    let spin = g.add_node("spin", |s: Arc<Flow>, _| async move {
        Ok(FlowUpdate::default().step(s.step + 1))
    });
    g.add_edge(START, spin);
    g.add_edge(spin, spin);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("loop").recursion_limit(7);
    let err = app.invoke(Flow::default(), &cfg).await.unwrap_err();
    assert!(matches!(err, RunError::RecursionLimit { limit: 7 }));
    assert_eq!(app.get_state(&cfg).await.unwrap().values.step, 7);
    // The limit is per run: continuing runs up to 7 more steps.
    app.invoke(None, &cfg).await.unwrap_err();
    assert_eq!(app.get_state(&cfg).await.unwrap().values.step, 14);
}

#[tokio::test(start_paused = true)]
async fn a_node_timeout_fails_the_task_and_the_error_is_stored() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut g = StateGraph::<Flow>::new();
    let a = attempts.clone();
    let slow = g.add_node("slow", move |_, _| {
        let a = a.clone();
        async move {
            if a.fetch_add(1, SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(log("slow"))
        }
    });
    g.set_timeout(slow, Duration::from_secs(5));
    g.add_edge(START, slow);
    g.add_edge(slow, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("timeout");
    let err = app.invoke(Flow::default(), &cfg).await.unwrap_err();
    assert_eq!(err.to_string(), "node `slow` failed: timed out after 5s");
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.tasks[0].error.as_deref(), Some("timed out after 5s"));
    let out = app.invoke(None, &cfg).await.unwrap();
    assert_eq!(out.values.log, ["slow"]);
}

/// Invokes `app` on `thread` with the `hang` metadata its stuck nodes wait on, cancels
/// the run once `ready` says so, and returns the error the run ended with (it must end
/// within 5 s of the cancellation).
async fn cancelled_run(
    app: &CompiledGraph<Flow>,
    thread: &str,
    ready: impl AsyncFn() -> bool,
) -> RunError {
    let token = CancellationToken::new();
    let cfg = RunConfig::thread(thread)
        .with_metadata("hang", true)
        .cancellation(token.clone());
    let run = tokio::spawn({
        let app = app.clone();
        async move { app.invoke(Flow::default(), &cfg).await }
    });
    while !ready().await {
        tokio::task::yield_now().await;
    }
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the cancelled run returns")
        .unwrap()
        .expect_err("the cancelled run fails")
}

#[tokio::test]
async fn cancellation_stops_the_run_and_keeps_finished_writes() {
    let mut g = StateGraph::<Flow>::new();
    let quick_runs = Arc::new(AtomicUsize::new(0));
    let q = quick_runs.clone();
    let quick = g.add_node("quick", move |_, _| {
        let q = q.clone();
        async move {
            q.fetch_add(1, SeqCst);
            Ok(log("quick"))
        }
    });
    let stuck = g.add_node("stuck", |_, cx: NodeContext| async move {
        if cx.config().metadata().contains_key("hang") {
            std::future::pending::<()>().await;
        }
        Ok(log("stuck"))
    });
    for n in [quick, stuck] {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let err = cancelled_run(&app, "cancel", async || {
        app.get_state(&RunConfig::thread("cancel"))
            .await
            .is_ok_and(|s| !s.values.log.is_empty())
    })
    .await;
    assert!(matches!(err, RunError::Cancelled), "{err}");
    let out = app
        .invoke(None, &RunConfig::thread("cancel"))
        .await
        .unwrap();
    assert_eq!(out.values.log, ["quick", "stuck"]);
    assert_eq!(quick_runs.load(SeqCst), 1);
}

#[tokio::test]
async fn cancelling_stops_a_step_of_one_task_and_it_runs_again_later() {
    let mut g = StateGraph::<Flow>::new();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let stuck = g.add_node("stuck", move |_, cx: NodeContext| {
        let s = s.clone();
        async move {
            s.fetch_add(1, SeqCst);
            if cx.config().metadata().contains_key("hang") {
                std::future::pending::<()>().await;
            }
            Ok(log("stuck"))
        }
    });
    g.add_edge(START, stuck);
    g.add_edge(stuck, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let err = cancelled_run(&app, "cancel-one", async || started.load(SeqCst) > 0).await;
    assert!(matches!(err, RunError::Cancelled), "{err}");
    // Nothing of the cancelled step was stored: it runs again, to the end.
    let out = app
        .invoke(None, &RunConfig::thread("cancel-one"))
        .await
        .unwrap();
    assert_eq!(out.values.log, ["stuck"]);
    assert_eq!(started.load(SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_node_is_a_stored_task_failure() {
    let mut g = StateGraph::<Flow>::new();
    let boom = g.add_node("boom", |_, _| async {
        if true {
            panic!("kaboom");
        }
        Ok(())
    });
    g.add_edge(START, boom);
    g.add_edge(boom, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let err = app
        .invoke(Flow::default(), &RunConfig::thread("panic"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "node `boom` failed: panicked: kaboom");
}

#[tokio::test]
async fn join_waits_for_branches_of_different_lengths() {
    let joined = Arc::new(AtomicUsize::new(0));
    let mut g = StateGraph::<Flow>::new();
    let short = g.add_node("short", |_, _| async { Ok(log("short")) });
    let long1 = g.add_node("long1", |_, _| async { Ok(log("long1")) });
    let long2 = g.add_node("long2", |_, _| async { Ok(log("long2")) });
    let j = joined.clone();
    let join = g.add_node("join", move |_, _| {
        let j = j.clone();
        async move {
            j.fetch_add(1, SeqCst);
            Ok(log("join"))
        }
    });
    g.add_edge(START, short);
    g.add_edge(START, long1);
    g.add_edge(long1, long2);
    g.add_join([short, long2], join);
    g.add_edge(join, END);
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Flow::default(), &RunConfig::default())
        .await
        .unwrap();
    assert_eq!(out.values.log, ["short", "long1", "long2", "join"]);
    assert_eq!(joined.load(SeqCst), 1);
}

#[tokio::test]
async fn command_update_and_goto_on_a_new_thread_start_there() {
    let mut g = StateGraph::<Flow>::new();
    let a = g.add_node("a", |_, _| async { Ok(log("a")) });
    let b = g.add_node("b", |_, _| async { Ok(log("b")) });
    g.add_edge(START, a);
    g.add_edge(a, b);
    g.add_edge(b, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let out = app
        .invoke(
            Command::update(log("seed")).goto(b),
            &RunConfig::thread("goto"),
        )
        .await
        .unwrap();
    assert_eq!(out.values.log, ["seed", "b"]);
    let err = app
        .invoke(Command::<Flow>::new(), &RunConfig::thread("goto"))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::EmptyCommand));
}
