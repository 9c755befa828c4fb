//! Interrupts and resumes: the reference scenarios (Part C 45-61) under our strict
//! rules, plus the cases the reference gets wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use hitl_runtime::checkpoint::WriteKind;
use hitl_runtime::{
    Command, END, InMemorySaver, Interrupt, InterruptId, NodeContext, NodeError, ResumeError,
    RunConfig, RunError, RunStatus, START, SendTo, State, StateGraph, StreamMode, schema_of,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::{Redactor, log_stream};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Log {
    #[state(reducer = append)]
    pub log: Vec<String>,
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn entry(text: impl Into<String>) -> LogUpdate {
    LogUpdate::default().log(vec![text.into()])
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[tokio::test]
async fn three_sequential_interrupts_replay_the_node_from_its_start() {
    let prologue = counter();
    let mut g = StateGraph::<Log>::new();
    let p = prologue.clone();
    let ask = g.add_node("ask", move |_, cx: NodeContext| {
        let p = p.clone();
        async move {
            p.fetch_add(1, SeqCst);
            let a = cx.interrupt(json!("first?")).await?;
            let b = cx.interrupt(json!("second?")).await?;
            let c = cx.interrupt(json!("third?")).await?;
            Ok(entry(format!("ask:{},{},{}", s(&a), s(&b), s(&c))))
        }
    });
    g.add_edge(START, ask);
    g.add_edge(ask, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("seq");

    let mut redactor = Redactor::default();
    let modes = StreamMode::Updates | StreamMode::Tasks;
    let mut log = log_stream(app.stream(Log::default(), &cfg, modes), &mut redactor).await;
    let mut ids = Vec::new();
    for answer in ["A", "B", "C"] {
        let state = app.get_state(&cfg).await.unwrap();
        assert_eq!(state.interrupts.len(), 1);
        ids.push(state.interrupts[0].id);
        log.push_str("\n-- resume\n");
        log.push_str(
            &log_stream(
                app.stream(Command::resume(answer), &cfg, modes),
                &mut redactor,
            )
            .await,
        );
    }
    assert_eq!(ids.len(), 3);
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    let done = app.get_state(&cfg).await.unwrap();
    assert_eq!(done.values.log, ["ask:A,B,C"]);
    assert!(done.next.is_empty());
    // Code before the interrupts ran once per attempt: 1 + 3 resumes.
    assert_eq!(prologue.load(SeqCst), 4);
    insta::assert_snapshot!(log, @r#"
    task start ask (step 0)
    task end ask: interrupted <id1>
    interrupt [<id1> ask "first?"]
    -- resume
    task start ask (step 0)
    task end ask: interrupted <id2>
    interrupt [<id2> ask "second?"]
    -- resume
    task start ask (step 0)
    task end ask: interrupted <id3>
    interrupt [<id3> ask "third?"]
    -- resume
    task start ask (step 0)
    update ask: {"log":["ask:A,B,C"]}
    task end ask: finished {"log":["ask:A,B,C"]}
    "#);
}

/// START -> a, b, c (in parallel) -> join -> END; a and b ask, c succeeds.
fn parallel_graph(runs: Arc<[AtomicUsize; 4]>) -> hitl_runtime::CompiledGraph<Log> {
    let mut g = StateGraph::<Log>::new();
    let r = runs.clone();
    let a = g.add_node("a", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            r[0].fetch_add(1, SeqCst);
            let v = cx.interrupt(json!("a?")).await?;
            Ok(entry(format!("a:{}", s(&v))))
        }
    });
    let r = runs.clone();
    let b = g.add_node("b", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            r[1].fetch_add(1, SeqCst);
            let v = cx.interrupt(json!("b?")).await?;
            Ok(entry(format!("b:{}", s(&v))))
        }
    });
    let r = runs.clone();
    let c = g.add_node("c", move |_, _| {
        let r = r.clone();
        async move {
            r[2].fetch_add(1, SeqCst);
            Ok(entry("c"))
        }
    });
    let r = runs.clone();
    let join = g.add_node("join", move |_, _| {
        let r = r.clone();
        async move {
            r[3].fetch_add(1, SeqCst);
            Ok(entry("join"))
        }
    });
    for n in [a, b, c] {
        g.add_edge(START, n);
        g.add_edge(n, join);
    }
    g.add_edge(join, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

fn runs() -> Arc<[AtomicUsize; 4]> {
    Arc::new([0, 0, 0, 0].map(AtomicUsize::new))
}

#[tokio::test]
async fn parallel_interrupts_are_reported_together_and_answered_by_id() {
    let runs = runs();
    let app = parallel_graph(runs.clone());
    let cfg = RunConfig::thread("par");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.values.log, ["c"], "the finished sibling's write shows");
    assert_eq!(out.next, ["a", "b"]);
    let ids: Vec<InterruptId> = out.interrupts.iter().map(|i| i.id).collect();
    assert_eq!(out.interrupts[0].node, "a");
    assert_eq!(out.interrupts[1].node, "b");

    // A single value is ambiguous with two pending: rejected, nothing stored.
    let err = app.invoke(Command::resume("X"), &cfg).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Resume(ResumeError::Ambiguous { pending }) if *pending == ids),
        "{err}"
    );
    assert_eq!(app.get_state(&cfg).await.unwrap().interrupts.len(), 2);

    // Answer a only: b asks again with the same id; c does not run again.
    let out = app
        .invoke(Command::resume_by_id([(ids[0], "A")]), &cfg)
        .await
        .unwrap();
    assert_eq!(out.interrupts.len(), 1);
    assert_eq!(out.interrupts[0].id, ids[1]);
    assert_eq!(out.next, ["b"]);
    assert_eq!(runs[2].load(SeqCst), 1);

    // Now b is the only one pending, so a single value is fine.
    let out = app.invoke(Command::resume("B"), &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["a:A", "b:B", "c", "join"]);
    assert_eq!(
        [0, 1, 2, 3].map(|i| runs[i].load(SeqCst)),
        [2, 3, 1, 1],
        "a ran twice, b three times, c and join once"
    );
}

#[tokio::test]
async fn a_full_map_resumes_all_parallel_interrupts_in_one_call() {
    let runs = runs();
    let app = parallel_graph(runs.clone());
    let cfg = RunConfig::thread("par-full");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    let answers = [(out.interrupts[0].id, "A"), (out.interrupts[1].id, "B")];
    let out = app
        .invoke(Command::resume_by_id(answers), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["a:A", "b:B", "c", "join"]);
    assert_eq!(runs[3].load(SeqCst), 1);
}

#[tokio::test]
async fn unknown_ids_and_empty_maps_are_rejected_and_change_nothing() {
    let app = parallel_graph(runs());
    let cfg = RunConfig::thread("par-unknown");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    let pending: Vec<InterruptId> = out.interrupts.iter().map(|i| i.id).collect();
    let before = app.get_state(&cfg).await.unwrap();

    let bogus: InterruptId = "0".repeat(32).parse().unwrap();
    let err = app
        .invoke(Command::resume_by_id([(bogus, "A")]), &cfg)
        .await
        .unwrap_err();
    match &err {
        RunError::Resume(ResumeError::UnknownInterrupt { id, pending: p }) => {
            assert_eq!(*id, bogus);
            assert_eq!(*p, pending);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("is not pending"), "{err}");

    let err = app
        .invoke(
            Command::resume_by_id(Vec::<(InterruptId, Value)>::new()),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Resume(ResumeError::EmptyMap { .. })),
        "{err}"
    );

    let after = app.get_state(&cfg).await.unwrap();
    assert_eq!(after.checkpoint_id, before.checkpoint_id);
    assert_eq!(after.interrupts, before.interrupts);
    let head = app
        .checkpointer()
        .unwrap()
        .get("par-unknown", "", None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(head.writes.iter().all(|w| w.kind != WriteKind::Resume));

    // A correct resume still works.
    let answers = [(pending[0], "A"), (pending[1], "B")];
    assert!(
        app.invoke(Command::resume_by_id(answers), &cfg)
            .await
            .unwrap()
            .is_done()
    );
}

#[tokio::test]
async fn a_failed_task_is_stored_and_only_it_runs_again() {
    let ok_runs = counter();
    let broken = Arc::new(AtomicBool::new(true));
    let mut g = StateGraph::<Log>::new();
    let r = ok_runs.clone();
    let ok = g.add_node("ok", move |_, _| {
        let r = r.clone();
        async move {
            r.fetch_add(1, SeqCst);
            Ok(entry("ok"))
        }
    });
    let b = broken.clone();
    let bad = g.add_node("bad", move |_, _| {
        let b = b.clone();
        async move {
            if b.load(SeqCst) {
                return Err(NodeError::msg("the database is down"));
            }
            Ok(entry("bad"))
        }
    });
    let after = g.add_node("after", |_, _| async { Ok(entry("after")) });
    g.add_edge(START, ok);
    g.add_edge(START, bad);
    g.add_edge(ok, after);
    g.add_edge(bad, after);
    g.add_edge(after, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("fail");

    let err = app.invoke(Log::default(), &cfg).await.unwrap_err();
    match &err {
        RunError::NodeFailed { node, message, .. } => {
            assert_eq!(node, "bad");
            assert_eq!(message, "the database is down");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(err.to_string(), "node `bad` failed: the database is down");
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.next, ["bad"]);
    assert_eq!(state.values.log, ["ok"]);
    let bad_task = state.tasks.iter().find(|t| t.name == "bad").unwrap();
    assert_eq!(bad_task.error.as_deref(), Some("the database is down"));

    broken.store(false, SeqCst);
    let out = app.invoke(None, &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["ok", "bad", "after"]);
    assert_eq!(
        ok_runs.load(SeqCst),
        1,
        "the finished sibling never re-runs"
    );
}

#[tokio::test]
async fn parallel_branches_with_an_interrupting_and_a_failing_sibling() {
    let runs = runs();
    let broken = Arc::new(AtomicBool::new(true));
    let mut g = StateGraph::<Log>::new();
    let r = runs.clone();
    let a = g.add_node("a", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            r[0].fetch_add(1, SeqCst);
            let v = cx.interrupt(json!("approve a?")).await?;
            Ok(entry(format!("a:{}", s(&v))))
        }
    });
    let (r, brk) = (runs.clone(), broken.clone());
    let b = g.add_node("b", move |_, _| {
        let (r, brk) = (r.clone(), brk.clone());
        async move {
            r[1].fetch_add(1, SeqCst);
            if brk.load(SeqCst) {
                return Err(NodeError::msg("b is broken"));
            }
            Ok(entry("b"))
        }
    });
    let r = runs.clone();
    let c = g.add_node("c", move |_, _| {
        let r = r.clone();
        async move {
            r[2].fetch_add(1, SeqCst);
            Ok(entry("c"))
        }
    });
    let join = g.add_node("join", |_, _| async { Ok(entry("join")) });
    for n in [a, b, c] {
        g.add_edge(START, n);
        g.add_edge(n, join);
    }
    g.add_edge(join, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("mixed");

    let err = app.invoke(Log::default(), &cfg).await.unwrap_err();
    assert!(
        matches!(&err, RunError::NodeFailed { node, .. } if node == "b"),
        "{err}"
    );
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.interrupts.len(), 1, "a's interrupt is pending too");
    let a_id = state.interrupts[0].id;
    assert_eq!(state.next, ["a", "b"]);
    assert_eq!(state.values.log, ["c"]);

    broken.store(false, SeqCst);
    let out = app.invoke(None, &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert_eq!(
        out.interrupts[0].id, a_id,
        "the id is stable until the next checkpoint"
    );
    assert_eq!(out.values.log, ["b", "c"]);

    let out = app.invoke(Command::resume("yes"), &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.log, ["a:yes", "b", "c", "join"]);
    assert_eq!([0, 1, 2].map(|i| runs[i].load(SeqCst)), [3, 2, 1]);
}

#[tokio::test]
async fn without_a_checkpointer_interrupts_surface_but_cannot_be_resumed() {
    let mut g = StateGraph::<Log>::new();
    let ask = g.add_node("ask", |_, cx: NodeContext| async move {
        cx.interrupt(json!("q")).await?;
        Ok(entry("never"))
    });
    g.add_edge(START, ask);
    g.add_edge(ask, END);
    let app = g.compile().build().unwrap();
    let out = app
        .invoke(Log::default(), &RunConfig::default())
        .await
        .unwrap();
    assert!(out.is_interrupted());
    assert_eq!(out.interrupts[0].value, json!("q"));
    assert_eq!(out.checkpoint_id, None);
    let err = app
        .invoke(Command::resume("x"), &RunConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Resume(ResumeError::NoCheckpointer)));
    assert_eq!(
        err.to_string(),
        "cannot resume without a checkpointer: compile the graph with `.checkpointer(..)`"
    );
}

#[tokio::test]
async fn a_checkpointer_needs_a_thread_id() {
    let mut g = StateGraph::<Log>::new();
    let n = g.add_node("n", |_, _| async { Ok(entry("n")) });
    g.add_edge(START, n);
    g.add_edge(n, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let err = app
        .invoke(Log::default(), &RunConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::MissingThreadId));
    assert!(err.to_string().contains("RunConfig::thread"));
}

fn ask_graph(runs: Arc<AtomicUsize>) -> hitl_runtime::CompiledGraph<Log> {
    let mut g = StateGraph::<Log>::new();
    let pre = g.add_node("pre", |_, _| async { Ok(entry("pre")) });
    let r = runs.clone();
    let ask = g.add_node("ask", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            r.fetch_add(1, SeqCst);
            let v = cx.interrupt(json!("name?")).await?;
            Ok(entry(format!("ask:{}", s(&v))))
        }
    });
    let r = runs.clone();
    let post = g.add_node("post", move |_, _| {
        let r = r.clone();
        async move {
            r.fetch_add(100, SeqCst);
            Ok(entry("post"))
        }
    });
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
async fn resuming_a_finished_or_unknown_thread_is_an_error() {
    let app = ask_graph(counter());
    let cfg = RunConfig::thread("done");
    app.invoke(Log::default(), &cfg).await.unwrap();
    app.invoke(Command::resume("x"), &cfg).await.unwrap();
    let before = app.get_state(&cfg).await.unwrap();
    let err = app
        .invoke(Command::resume("again"), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Resume(ResumeError::NothingPending { .. })),
        "{err}"
    );
    assert_eq!(
        app.get_state(&cfg).await.unwrap().checkpoint_id,
        before.checkpoint_id
    );

    let err = app
        .invoke(Command::resume("x"), &RunConfig::thread("nobody"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Resume(ResumeError::UnknownThread { .. })),
        "{err}"
    );
    assert!(matches!(
        app.get_state(&RunConfig::thread("nobody"))
            .await
            .unwrap_err(),
        RunError::UnknownThread { .. }
    ));
    let err = app
        .invoke(None, &RunConfig::thread("nobody"))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::UnknownThread { .. }));
}

#[tokio::test]
async fn continue_re_raises_pending_interrupts_with_the_same_ids() {
    let runs = counter();
    let app = ask_graph(runs.clone());
    let cfg = RunConfig::thread("again");
    let first = app.invoke(Log::default(), &cfg).await.unwrap();
    let again = app.invoke(None, &cfg).await.unwrap();
    assert_eq!(first.interrupts[0].id, again.interrupts[0].id);
    assert_eq!(runs.load(SeqCst), 2);
}

#[tokio::test]
async fn a_swallowed_interrupt_still_interrupts_the_task() {
    let mut g = StateGraph::<Log>::new();
    let sneaky = g.add_node("sneaky", |_, cx: NodeContext| async move {
        // Ignoring the error must not let the task finish with this update.
        if cx.interrupt(json!("may I?")).await.is_err() {
            assert!(cx.is_interrupted());
        }
        Ok(entry("did it anyway"))
    });
    g.add_edge(START, sneaky);
    g.add_edge(sneaky, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("sneaky");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    assert!(out.values.log.is_empty());
    let out = app.invoke(Command::resume("yes"), &cfg).await.unwrap();
    assert_eq!(out.values.log, ["did it anyway"]);
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Approval {
    approved: bool,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = Approval)]
struct ConfirmTransfer {
    amount: u32,
    to: String,
}

fn transfer_graph() -> hitl_runtime::CompiledGraph<Log> {
    let mut g = StateGraph::<Log>::new();
    let pay = g.add_node("pay", |_, cx: NodeContext| async move {
        let decision: Approval = cx
            .interrupt(ConfirmTransfer {
                amount: 5000,
                to: "acme".into(),
            })
            .await?;
        Ok(entry(if decision.approved {
            "paid"
        } else {
            "cancelled"
        }))
    });
    g.add_edge(START, pay);
    g.add_edge(pay, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_typed_interrupt_publishes_its_schema_and_rejects_bad_answers_before_storing() {
    let app = transfer_graph();
    let cfg = RunConfig::thread("typed");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    let pending = &out.interrupts[0];
    assert_eq!(pending.value, json!({"amount": 5000, "to": "acme"}));
    assert_eq!(
        pending.resume_schema.as_deref(),
        Some(&*schema_of::<Approval>())
    );

    for bad in [
        json!({"approved": "yes"}),
        json!({"ok": true}),
        json!("approve"),
    ] {
        let err = app
            .invoke(Command::resume(bad.clone()), &cfg)
            .await
            .unwrap_err();
        let RunError::Resume(ResumeError::InvalidValue { id, problems }) = &err else {
            panic!("{bad} gave {err}");
        };
        assert_eq!(*id, pending.id);
        assert!(!problems.is_empty());
    }
    let err = app
        .invoke(Command::resume(json!({"approved": "yes"})), &cfg)
        .await
        .unwrap_err();
    insta::assert_snapshot!(Redactor::default().redact(&err.to_string()), @r#"invalid answer for interrupt <id1>: at `/approved`: "yes" is not of type "boolean""#);
    let head = app
        .checkpointer()
        .unwrap()
        .get("typed", "", None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        head.writes.iter().all(|w| w.kind != WriteKind::Resume),
        "rejected answers are never stored"
    );
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(
        state.interrupts[0].id, pending.id,
        "the same interrupt is still pending"
    );

    let out = app
        .invoke(
            Command::resume_by_id([(pending.id, json!({"approved": true}))]),
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(out.values.log, ["paid"]);
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Fan {
    items: Vec<u32>,
    #[state(reducer = append)]
    results: Vec<String>,
}

#[tokio::test]
async fn send_fan_out_with_two_of_five_interrupting_answered_by_id_in_one_resume() {
    let runs = Arc::new((0..5).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let mut g = StateGraph::<Fan>::new();
    let r = runs.clone();
    let work = g.add_node("work", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            let item: u32 = cx.input()?;
            r[item as usize].fetch_add(1, SeqCst);
            if item % 2 == 1 {
                let v = cx.interrupt(json!({"check": item})).await?;
                return Ok(FanUpdate::default().results(vec![format!("{item}:{}", s(&v))]));
            }
            Ok(FanUpdate::default().results(vec![format!("{item}")]))
        }
    });
    g.add_conditional_edges_to(START, [work], move |state: &Fan| {
        state
            .items
            .iter()
            .map(|i| SendTo::new(work, i))
            .collect::<Vec<_>>()
    });
    g.add_edge(work, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("fan");
    let out = app
        .invoke(
            Fan {
                items: vec![0, 1, 2, 3, 4],
                results: vec![],
            },
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(out.interrupts.len(), 2);
    assert_eq!(out.interrupts[0].value, json!({"check": 1}));
    assert_eq!(out.interrupts[1].value, json!({"check": 3}));
    assert_ne!(out.interrupts[0].id, out.interrupts[1].id);
    assert_eq!(out.values.results, ["0", "2", "4"]);

    let answers = [
        (out.interrupts[0].id, "one"),
        (out.interrupts[1].id, "three"),
    ];
    let out = app
        .invoke(Command::resume_by_id(answers), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.results, ["0", "1:one", "2", "3:three", "4"]);
    let counts: Vec<usize> = runs.iter().map(|c| c.load(SeqCst)).collect();
    assert_eq!(counts, [1, 2, 1, 2, 1], "finished sends never re-run");
}

#[tokio::test]
async fn pending_interrupts_and_answers_are_stored_as_pending_writes() {
    let app = parallel_graph(runs());
    let cfg = RunConfig::thread("writes");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    let saver = app.checkpointer().unwrap();
    let head = saver.get("writes", "", None, None).await.unwrap().unwrap();
    let interrupt_writes: Vec<_> = head
        .writes
        .iter()
        .filter(|w| w.kind == WriteKind::Interrupt)
        .collect();
    assert_eq!(interrupt_writes.len(), 2);
    assert!(
        interrupt_writes
            .iter()
            .all(|w| w.idx == WriteKind::INTERRUPT_IDX)
    );
    let results = head
        .writes
        .iter()
        .filter(|w| w.kind == WriteKind::Result)
        .count();
    assert_eq!(results, 1, "c's result is stored as soon as it finished");

    app.invoke(Command::resume_by_id([(out.interrupts[0].id, "A")]), &cfg)
        .await
        .unwrap();
    let head = saver.get("writes", "", None, None).await.unwrap().unwrap();
    let resume: Vec<_> = head
        .writes
        .iter()
        .filter(|w| w.kind == WriteKind::Resume)
        .collect();
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0].idx, WriteKind::RESUME_BASE_IDX);
    assert_eq!(resume[0].task_id, out.interrupts[0].task_id);
}

#[tokio::test]
async fn a_subgraph_interrupt_is_resumed_from_the_parent_without_re_running_finished_inner_nodes() {
    let runs = runs();
    let mut inner = StateGraph::<Log>::new();
    let r = runs.clone();
    let first = inner.add_node("first", move |_, _| {
        let r = r.clone();
        async move {
            r[0].fetch_add(1, SeqCst);
            Ok(entry("first"))
        }
    });
    let r = runs.clone();
    let ask = inner.add_node("ask", move |_, cx: NodeContext| {
        let r = r.clone();
        async move {
            r[1].fetch_add(1, SeqCst);
            let v = cx.interrupt(json!("inner question")).await?;
            Ok(entry(format!("ask:{}", s(&v))))
        }
    });
    let r = runs.clone();
    let last = inner.add_node("last", move |_, _| {
        let r = r.clone();
        async move {
            r[2].fetch_add(1, SeqCst);
            Ok(entry("last"))
        }
    });
    inner.add_edge(START, first);
    inner.add_edge(first, ask);
    inner.add_edge(ask, last);
    inner.add_edge(last, END);
    let inner = inner.compile().build().unwrap();

    let mut outer = StateGraph::<Log>::new();
    let sub = outer.add_subgraph(
        "sub",
        inner,
        |_: &Log| Log::default(),
        |done: &Log| {
            LogUpdate::default().log(
                done.log
                    .iter()
                    .map(|l| format!("sub/{l}"))
                    .collect::<Vec<_>>(),
            )
        },
    );
    let r = runs.clone();
    let after = outer.add_node("after", move |_, _| {
        let r = r.clone();
        async move {
            r[3].fetch_add(1, SeqCst);
            Ok(entry("after"))
        }
    });
    outer.add_edge(START, sub);
    outer.add_edge(sub, after);
    outer.add_edge(after, END);
    let app = outer
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("sub");

    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    let pending = &out.interrupts[0];
    assert_eq!(pending.node, "ask");
    assert!(pending.ns.starts_with("sub:"), "{}", pending.ns);
    assert_eq!(out.next, ["sub"]);
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.interrupts, out.interrupts, "visible at the root");

    let out = app.invoke(Command::resume("yes"), &cfg).await.unwrap();
    assert!(out.is_done(), "{out:?}");
    assert_eq!(
        out.values.log,
        ["sub/first", "sub/ask:yes", "sub/last", "after"]
    );
    assert_eq!([0, 1, 2, 3].map(|i| runs[i].load(SeqCst)), [1, 2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_double_resume_lets_exactly_one_win() {
    for round in 0..40 {
        let effects = counter();
        let mut g = StateGraph::<Log>::new();
        let ask = g.add_node("ask", |_, cx: NodeContext| async move {
            let v = cx.interrupt(json!("go?")).await?;
            Ok(entry(format!("ask:{}", s(&v))))
        });
        let e = effects.clone();
        let act = g.add_node("act", move |_, _| {
            let e = e.clone();
            async move {
                e.fetch_add(1, SeqCst);
                Ok(entry("act"))
            }
        });
        g.add_edge(START, ask);
        g.add_edge(ask, act);
        g.add_edge(act, END);
        let app = g
            .compile()
            .checkpointer(InMemorySaver::new())
            .build()
            .unwrap();
        let cfg = RunConfig::thread(format!("race-{round}"));
        app.invoke(Log::default(), &cfg).await.unwrap();

        let (a, b) = tokio::join!(
            tokio::spawn({
                let (app, cfg) = (app.clone(), cfg.clone());
                async move { app.invoke(Command::resume("first"), &cfg).await }
            }),
            tokio::spawn({
                let (app, cfg) = (app.clone(), cfg.clone());
                async move { app.invoke(Command::resume("second"), &cfg).await }
            }),
        );
        let results = [a.unwrap(), b.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        RunError::Checkpoint(_)
                            | RunError::ThreadBusy { .. }
                            | RunError::Resume(
                                ResumeError::NothingPending { .. }
                                    | ResumeError::AlreadyAnswered { .. }
                            )
                    ),
                    "round {round}: unexpected loser error {e}"
                );
            }
        }
        assert_eq!(
            effects.load(SeqCst),
            1,
            "round {round}: the effect ran once"
        );
        let history = app.get_state_history(&cfg).await.unwrap();
        for pair in history.windows(2) {
            assert_eq!(
                pair[0].parent_checkpoint_id,
                Some(pair[1].checkpoint_id),
                "round {round}: history is one chain, no fork"
            );
        }
    }
}

#[tokio::test]
async fn an_answer_that_does_not_decode_fails_the_task_loudly() {
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Loose {
        n: i64,
    }
    #[derive(Deserialize)]
    struct Strict {
        #[allow(dead_code)]
        n: u8,
    }
    // A payload whose schema (Loose) admits answers its Deserialize (Strict) rejects.
    #[derive(Serialize)]
    struct Ask;
    impl Interrupt for Ask {
        type Resume = Strict;
        fn resume_schema() -> Option<Arc<Value>> {
            Some(schema_of::<Loose>())
        }
    }
    let mut g = StateGraph::<Log>::new();
    let n = g.add_node("n", |_, cx: NodeContext| async move {
        let _: Strict = cx.interrupt(Ask).await?;
        Ok(entry("n"))
    });
    g.add_edge(START, n);
    g.add_edge(n, END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("decode");
    app.invoke(Log::default(), &cfg).await.unwrap();
    let err = app
        .invoke(Command::resume(json!({"n": 1000})), &cfg)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not decode as"), "{err}");
}

#[tokio::test]
async fn a_status_check_reads_the_pending_interrupt_without_changing_anything() {
    let app = ask_graph(counter());
    let cfg = RunConfig::thread("status");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    assert_eq!(out.status, RunStatus::Interrupted);
    let a = app.get_state(&cfg).await.unwrap();
    let b = app.get_state(&cfg).await.unwrap();
    assert_eq!(a.checkpoint_id, b.checkpoint_id);
    assert_eq!(a.interrupts, out.interrupts);
    assert_eq!(a.next, ["ask"]);
    assert_eq!(a.values.log, ["pre"]);
}
