//! The checkpointer conformance suite: every backend runs these checks.
//!
//! Implement [`Harness`] for your backend and expand
//! [`checkpointer_conformance!`](crate::checkpointer_conformance) in a test module: it generates one
//! `#[tokio::test]` per check.
//!
//! ```ignore
//! struct Memory;
//! #[async_trait::async_trait]
//! impl Harness for Memory { /* fresh, reopen, corrupt_blob */ }
//! hitl_runtime::checkpointer_conformance!(Memory);
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::checkpoint::{
    Blob, BlobKind, ChannelVersion, Checkpoint, CheckpointSource, CheckpointWrite, Checkpointer,
    DeltaChain, ListFilter, PendingWrite, Prune, TaskSpec, WriteKind,
};
use crate::error::{CheckpointError, RunError};
use crate::ids::{CheckpointId, TaskId};
use crate::{Command, InMemorySaver, NodeContext, RunConfig, START, State, StateGraph};

/// How the suite drives one backend.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The saver type.
    type Saver: Checkpointer + Clone;

    /// A saver on empty storage (migrations applied).
    async fn fresh(&self) -> Self::Saver;

    /// A new handle on the same storage (as after a restart): migrations run again
    /// and must be a no-op.
    async fn reopen(&self, saver: &Self::Saver) -> Self::Saver;

    /// Overwrites the stored data of every blob of `channel` in `thread` (root
    /// namespace) with something that does not decode as that channel's value.
    async fn corrupt_blob(&self, saver: &Self::Saver, thread: &str, channel: &str);
}

/// The in-memory saver's harness.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHarness;

#[async_trait::async_trait]
impl Harness for MemoryHarness {
    type Saver = InMemorySaver;

    async fn fresh(&self) -> InMemorySaver {
        InMemorySaver::new()
    }

    async fn reopen(&self, saver: &InMemorySaver) -> InMemorySaver {
        saver.clone()
    }

    async fn corrupt_blob(&self, saver: &InMemorySaver, thread: &str, channel: &str) {
        assert!(
            saver.corrupt_blob(thread, "", channel, r#"{"corrupt": true}"#),
            "no blob of channel `{channel}` in thread `{thread}`"
        );
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("valid JSON")
}

fn checkpoint(id: CheckpointId, parent: Option<CheckpointId>, step: i64) -> Checkpoint {
    let mut metadata = serde_json::Map::new();
    metadata.insert("step_tag".into(), json!(step));
    Checkpoint {
        id,
        parent_id: parent,
        step,
        source: if parent.is_some() {
            CheckpointSource::Loop
        } else {
            CheckpointSource::Input
        },
        created_at_ms: 1_700_000_000_000 + step.max(0) as u64,
        channels: vec![ChannelVersion {
            channel: "value".into(),
            version: id,
            delta: None,
        }],
        versions_seen: [("node".to_string(), id)].into_iter().collect(),
        next: vec![
            TaskSpec::node("node"),
            TaskSpec {
                node: "send".into(),
                input: Some(raw(r#"{"item":1}"#)),
            },
        ],
        metadata,
    }
}

fn full_blob(channel: &str, version: CheckpointId, json: &str) -> Blob {
    Blob {
        channel: channel.into(),
        version,
        kind: BlobKind::Full,
        data: raw(json),
    }
}

fn write(task: u128, idx: i32, kind: WriteKind, json: &str) -> PendingWrite {
    PendingWrite {
        task_id: TaskId::from_u128(task),
        idx,
        kind,
        value: raw(json),
    }
}

async fn put_chain<C: Checkpointer>(
    saver: &C,
    thread: &str,
    ns: &str,
    n: usize,
) -> Vec<CheckpointId> {
    let mut ids = Vec::new();
    let mut parent = None;
    for step in 0..n {
        let id = CheckpointId::new_after(parent);
        saver
            .put(CheckpointWrite {
                thread: thread.into(),
                ns: ns.into(),
                checkpoint: Arc::new(checkpoint(id, parent, step as i64 - 1)),
                blobs: vec![full_blob("value", id, &format!("{{\"n\":{step}}}"))],
                head_writes: Vec::new(),
                expected_head: parent,
            })
            .await
            .expect("put");
        ids.push(id);
        parent = Some(id);
    }
    ids
}

/// Every field of a checkpoint, its blobs and its writes survive a round trip.
pub async fn round_trip<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    assert!(saver.get("t", "", None, None).await.unwrap().is_none());
    assert_eq!(saver.head("t", "").await.unwrap(), None);
    let id = CheckpointId::new_after(None);
    let mut cp = checkpoint(id, None, -1);
    cp.channels.push(ChannelVersion {
        channel: "list".into(),
        version: id,
        delta: Some(DeltaChain {
            snapshot: id,
            snapshot_bytes: 9,
            delta_bytes: 0,
        }),
    });
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(cp.clone()),
            blobs: vec![
                full_blob("value", id, r#"{"n":0,"text":"héllo \"quoted\""}"#),
                full_blob("list", id, r#"["a","b"]"#),
            ],
            head_writes: Vec::new(),
            expected_head: None,
        })
        .await
        .unwrap();
    let writes = vec![
        write(1, 0, WriteKind::Result, r#"{"update":{"value":{"n":1}}}"#),
        write(
            2,
            WriteKind::ERROR_IDX,
            WriteKind::Error,
            r#"{"message":"boom"}"#,
        ),
        write(3, WriteKind::INTERRUPT_IDX, WriteKind::Interrupt, "[]"),
        write(0, 0, WriteKind::Command, r#"{"goto":[]}"#),
    ];
    saver.put_writes("t", "", id, writes.clone()).await.unwrap();

    assert_eq!(saver.head("t", "").await.unwrap(), Some(id));
    for got in [
        saver.get("t", "", None, None).await.unwrap().unwrap(),
        saver.get("t", "", Some(id), None).await.unwrap().unwrap(),
    ] {
        assert_eq!(*got.checkpoint, cp);
        let mut blobs: Vec<(String, String)> = got
            .blobs
            .iter()
            .map(|b| (b.channel.to_string(), b.data.get().to_owned()))
            .collect();
        blobs.sort();
        assert_eq!(
            blobs,
            [
                ("list".to_string(), r#"["a","b"]"#.to_string()),
                (
                    "value".to_string(),
                    r#"{"n":0,"text":"héllo \"quoted\""}"#.to_string()
                ),
            ]
        );
        assert!(
            got.blobs
                .iter()
                .all(|b| b.kind == BlobKind::Full && b.version == id)
        );
        let mut got_writes: Vec<_> = got
            .writes
            .iter()
            .map(|w| (w.task_id, w.idx, w.kind, w.value.get().to_owned()))
            .collect();
        got_writes.sort_by_key(|w| (w.0, w.1));
        let mut want: Vec<_> = writes
            .iter()
            .map(|w| (w.task_id, w.idx, w.kind, w.value.get().to_owned()))
            .collect();
        want.sort_by_key(|w| (w.0, w.1));
        assert_eq!(got_writes, want);
    }
    // `have` lets the backend skip blobs the caller already has, never writes.
    let light = saver.get("t", "", None, Some(id)).await.unwrap().unwrap();
    assert_eq!(*light.checkpoint, cp);
    assert_eq!(light.writes.len(), 4);
    assert!(
        saver
            .get("t", "", Some(CheckpointId::new_after(None)), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(saver.get("other", "", None, None).await.unwrap().is_none());
}

/// `list` is newest first, across branches, with working filters.
pub async fn history_order_and_filters<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 5).await;
    // A fork from the second checkpoint becomes the head.
    let fork = CheckpointId::new_after(Some(ids[4]));
    let mut fork_cp = checkpoint(fork, Some(ids[1]), 0);
    fork_cp.source = CheckpointSource::Fork;
    fork_cp.channels[0].version = ids[1];
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(fork_cp.clone()),
            blobs: vec![],
            head_writes: Vec::new(),
            expected_head: Some(ids[4]),
        })
        .await
        .unwrap();
    assert_eq!(saver.head("t", "").await.unwrap(), Some(fork));
    let all = saver.list("t", "", &ListFilter::default()).await.unwrap();
    let listed: Vec<_> = all.iter().map(|c| c.id).collect();
    let mut want = ids.clone();
    want.push(fork);
    want.reverse();
    assert_eq!(listed, want, "newest first, both branches");
    assert_eq!(all[0], fork_cp);

    let limited = saver
        .list(
            "t",
            "",
            &ListFilter {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.iter().map(|c| c.id).collect::<Vec<_>>(), want[..2]);
    let before = saver
        .list(
            "t",
            "",
            &ListFilter {
                before: Some(ids[2]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        before.iter().map(|c| c.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("step_tag".into(), json!(1));
    let tagged = saver
        .list(
            "t",
            "",
            &ListFilter {
                metadata,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tagged.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[2]]);
    // The fork reads the value of the version it points to.
    let got = saver.get("t", "", None, None).await.unwrap().unwrap();
    assert_eq!(got.blobs.len(), 1);
    assert_eq!(got.blobs[0].data.get(), r#"{"n":1}"#);
}

/// A put whose expected head is stale fails with `Conflict` and stores nothing.
pub async fn compare_and_set_on_the_head<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let stale = CheckpointId::new_after(Some(ids[1]));
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, Some(ids[0]), 0)),
            blobs: vec![full_blob("value", stale, r#"{"n":99}"#)],
            head_writes: Vec::new(),
            expected_head: Some(ids[0]),
        })
        .await
        .unwrap_err();
    match err {
        CheckpointError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(expected, Some(ids[0]));
            assert_eq!(actual, Some(ids[1]));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(saver.head("t", "").await.unwrap(), Some(ids[1]));
    assert!(
        saver
            .get("t", "", Some(stale), None)
            .await
            .unwrap()
            .is_none()
    );
    // A first write on a thread that already exists is a conflict too.
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, None, -1)),
            blobs: vec![],
            head_writes: Vec::new(),
            expected_head: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    // Namespaces have their own heads.
    put_chain(&saver, "t", "sub:1", 1).await;
    assert_eq!(saver.head("t", "").await.unwrap(), Some(ids[1]));
}

/// `head_writes` land on the old head with the new checkpoint, by their modes, and a
/// put that loses the compare-and-set stores none of them.
pub async fn head_writes_go_with_the_checkpoint<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let head = ids[1];
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""stored first""#)],
        )
        .await
        .unwrap();
    let writes_of = |id| {
        let saver = &saver;
        async move {
            let mut w: Vec<(TaskId, i32, String)> = saver
                .get("t", "", Some(id), None)
                .await
                .unwrap()
                .unwrap()
                .writes
                .into_iter()
                .map(|w| (w.task_id, w.idx, w.value.get().to_owned()))
                .collect();
            w.sort_by_key(|w| (w.0, w.1));
            w
        }
    };
    // Loses the compare-and-set: nothing of it is stored.
    let stale = CheckpointId::new_after(Some(head));
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, Some(ids[0]), 1)),
            blobs: vec![full_blob("value", stale, r#"{"n":7}"#)],
            head_writes: vec![write(2, 0, WriteKind::Result, r#""lost""#)],
            expected_head: Some(ids[0]),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    assert!(writes_of(ids[0]).await.is_empty());
    assert_eq!(writes_of(head).await.len(), 1);
    // Wins: the writes are on the old head, by their modes (a result already stored
    // is kept; an error is upserted), and the new checkpoint has none.
    let next = CheckpointId::new_after(Some(head));
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(next, Some(head), 2)),
            blobs: vec![full_blob("value", next, r#"{"n":2}"#)],
            head_writes: vec![
                write(1, 0, WriteKind::Result, r#""second""#),
                write(2, 0, WriteKind::Result, r#""with the checkpoint""#),
                write(
                    3,
                    WriteKind::ERROR_IDX,
                    WriteKind::Error,
                    r#"{"message":"boom"}"#,
                ),
            ],
            expected_head: Some(head),
        })
        .await
        .unwrap();
    assert_eq!(saver.head("t", "").await.unwrap(), Some(next));
    assert_eq!(
        writes_of(head).await,
        [
            (TaskId::from_u128(1), 0, r#""stored first""#.to_owned()),
            (
                TaskId::from_u128(2),
                0,
                r#""with the checkpoint""#.to_owned()
            ),
            (
                TaskId::from_u128(3),
                WriteKind::ERROR_IDX,
                r#"{"message":"boom"}"#.to_owned()
            ),
        ]
    );
    assert!(writes_of(next).await.is_empty());
}

/// Results are insert-if-absent, errors and interrupts upserted, resume answers
/// insert-or-conflict (and only on the head); batches are all or nothing.
pub async fn pending_writes_idempotency<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let head = ids[1];
    let get = || async {
        let mut w: Vec<(TaskId, i32, String)> = saver
            .get("t", "", Some(head), None)
            .await
            .unwrap()
            .unwrap()
            .writes
            .into_iter()
            .map(|w| (w.task_id, w.idx, w.value.get().to_owned()))
            .collect();
        w.sort_by_key(|w| (w.0, w.1));
        w
    };
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""first""#)],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""retry""#)],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::INTERRUPT_IDX,
                WriteKind::Interrupt,
                "[1]",
            )],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::INTERRUPT_IDX,
                WriteKind::Interrupt,
                "[2]",
            )],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::RESUME_BASE_IDX,
                WriteKind::Resume,
                r#""yes""#,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        get().await,
        [
            (TaskId::from_u128(1), 0, r#""first""#.to_string()),
            (
                TaskId::from_u128(2),
                WriteKind::RESUME_BASE_IDX,
                r#""yes""#.to_string()
            ),
            (
                TaskId::from_u128(2),
                WriteKind::INTERRUPT_IDX,
                "[2]".to_string()
            ),
        ]
    );
    // A second answer in the same slot fails, and so does the rest of its batch.
    let err = saver
        .put_writes(
            "t",
            "",
            head,
            vec![
                write(9, 0, WriteKind::Result, r#""batched""#),
                write(2, WriteKind::RESUME_BASE_IDX, WriteKind::Resume, r#""no""#),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CheckpointError::WriteConflict { idx, .. } if idx == WriteKind::RESUME_BASE_IDX),
        "{err}"
    );
    assert_eq!(
        get().await.len(),
        3,
        "nothing of the failed batch was stored"
    );
    // Answers only land on the head.
    let err = saver
        .put_writes(
            "t",
            "",
            ids[0],
            vec![write(5, WriteKind::RESUME_BASE_IDX, WriteKind::Resume, "1")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    // Writes for a checkpoint of another thread stay there.
    assert!(saver.get("u", "", None, None).await.unwrap().is_none());
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[state(reducer = append)]
    lines: Vec<String>,
    title: String,
}

fn doc_graph(saver: impl Checkpointer) -> crate::CompiledGraph<Doc> {
    let mut g = StateGraph::<Doc>::new();
    let write_line = g.add_node("write", |s: Arc<Doc>, _: NodeContext| async move {
        let n = s.lines.len();
        Ok(DocUpdate::default().lines(vec![format!("line {n}: {}", "x".repeat(n % 200))]))
    });
    g.add_edge(START, write_line);
    g.add_edge(write_line, write_line);
    g.compile()
        .checkpointer(saver)
        .state_cache(0)
        .build()
        .expect("valid graph")
}

/// A long append thread (many delta chains and snapshots, a fork, a reopen) reads back
/// exactly at every checkpoint.
pub async fn delta_channels_across_snapshots<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = doc_graph(saver.clone());
    let cfg = RunConfig::thread("doc").recursion_limit(250);
    let err = app
        .invoke(DocUpdate::default().title("t"), &cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::RecursionLimit { .. }));
    let expect = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("line {i}: {}", "x".repeat(i % 200)))
            .collect()
    };
    let reopened = doc_graph(h.reopen(&saver).await);
    let state = reopened.get_state(&cfg).await.unwrap();
    assert_eq!(state.values.lines, expect(250));
    assert_eq!(state.values.title, "t");
    let history = reopened.get_state_history(&cfg).await.unwrap();
    assert_eq!(history.len(), 251);
    for s in &history {
        assert_eq!(s.values.lines.len() as i64, s.step + 1);
    }
    // Fork at step 100 and grow a second branch; both read back exactly.
    let at_100 = history.iter().find(|s| s.step == 100).unwrap();
    let fork_cfg = at_100.config.clone().recursion_limit(30);
    let _ = reopened.invoke(None, &fork_cfg).await;
    let head = reopened.get_state(&RunConfig::thread("doc")).await.unwrap();
    assert_eq!(head.values.lines, expect(101 + 30));
    let old_tip = reopened.get_state(&history[0].config).await.unwrap();
    assert_eq!(old_tip.values.lines, expect(250));
}

/// `delete_thread` removes one thread, all namespaces, and nothing else.
pub async fn delete_thread<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    put_chain(&saver, "gone", "", 3).await;
    put_chain(&saver, "gone", "sub:1", 2).await;
    let kept = put_chain(&saver, "kept", "", 2).await;
    saver.delete_thread("gone").await.unwrap();
    assert!(saver.get("gone", "", None, None).await.unwrap().is_none());
    assert!(
        saver
            .get("gone", "sub:1", None, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        saver
            .list("gone", "", &ListFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(saver.head("kept", "").await.unwrap(), Some(kept[1]));
    // The id can be reused from scratch.
    put_chain(&saver, "gone", "", 1).await;
}

/// Reopening runs the migrations again without harm and keeps the data.
pub async fn migrations_are_idempotent<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let again = h.reopen(&saver).await;
    let again = h.reopen(&again).await;
    assert_eq!(again.head("t", "").await.unwrap(), Some(ids[1]));
    put_chain(&again, "u", "", 1).await;
}

/// A corrupt stored value is an error naming the thread, never a default.
pub async fn decode_failure_is_an_error<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = doc_graph(saver.clone());
    let cfg = RunConfig::thread("corrupt").recursion_limit(3);
    let _ = app.invoke(DocUpdate::default().title("t"), &cfg).await;
    h.corrupt_blob(&saver, "corrupt", "lines").await;
    let err = app.get_state(&cfg).await.unwrap_err();
    assert!(
        matches!(err, RunError::Checkpoint(CheckpointError::Decode { .. })),
        "expected a decode error, got {err}"
    );
    assert!(
        err.to_string()
            .contains("corrupt checkpoint data in thread `corrupt`"),
        "{err}"
    );
    let err = app.invoke(None, &cfg).await.unwrap_err();
    assert!(
        matches!(err, RunError::Checkpoint(CheckpointError::Decode { .. })),
        "{err}"
    );
}

/// Pruning keeps the head lineage (or its newest part) and everything it needs.
pub async fn prune_keeps_what_the_head_needs<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = doc_graph(saver.clone());
    let cfg = RunConfig::thread("prune").recursion_limit(40);
    let _ = app.invoke(DocUpdate::default(), &cfg).await;
    let history = app.get_state_history(&cfg).await.unwrap();
    let _ = app
        .invoke(None, &history[20].config.clone().recursion_limit(5))
        .await;
    let before = app.get_state(&cfg).await.unwrap();
    let total = saver
        .list("prune", "", &ListFilter::default())
        .await
        .unwrap()
        .len();
    let removed = saver.prune("prune", Prune::KeepHeadLineage).await.unwrap();
    assert_eq!(
        removed, 20,
        "the abandoned branch of {total} checkpoints goes"
    );
    let removed = saver.prune("prune", Prune::KeepLast(3)).await.unwrap();
    assert!(removed > 0);
    let left = saver
        .list("prune", "", &ListFilter::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 3);
    let after = app.get_state(&cfg).await.unwrap();
    assert_eq!(after.values.lines, before.values.lines);
    let _ = app.invoke(None, &cfg.clone().recursion_limit(2)).await;
    assert_eq!(
        app.get_state(&cfg).await.unwrap().values.lines.len(),
        before.values.lines.len() + 2
    );
}

/// `threads_with_pending_interrupts` lists threads waiting for a human.
pub async fn pending_interrupt_inbox<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let mut g = StateGraph::<Doc>::new();
    let ask = g.add_node("ask", |_, cx: NodeContext| async move {
        let title: String = cx
            .interrupt(json!("title?"))
            .await?
            .as_str()
            .unwrap_or("")
            .to_owned();
        Ok(DocUpdate::default().title(title))
    });
    g.add_edge(START, ask);
    g.add_edge(ask, crate::END);
    let app = g.compile().checkpointer(saver.clone()).build().unwrap();
    for t in ["a", "b", "c"] {
        app.invoke(Doc::default(), &RunConfig::thread(t))
            .await
            .unwrap();
    }
    app.invoke(Command::resume("done"), &RunConfig::thread("b"))
        .await
        .unwrap();
    let mut inbox = saver.threads_with_pending_interrupts(10).await.unwrap();
    inbox.sort_by(|x, y| x.thread.cmp(&y.thread));
    assert_eq!(
        inbox.iter().map(|p| p.thread.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    let a = app.get_state(&RunConfig::thread("a")).await.unwrap();
    assert_eq!(inbox[0].interrupts, [a.interrupts[0].id]);
    assert_eq!(inbox[0].checkpoint, a.checkpoint_id);
    assert_eq!(
        saver
            .threads_with_pending_interrupts(1)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Generates one `#[tokio::test]` per conformance check for a [`Harness`].
///
/// Attributes after a `;` go on every generated test, e.g.
/// `checkpointer_conformance!(MyHarness::new(); #[ignore = "needs a database"])`.
#[macro_export]
macro_rules! checkpointer_conformance {
    ($harness:expr $(; $(#[$attr:meta])*)?) => {
        $crate::checkpointer_conformance!(@tests [$($(#[$attr])*)?] $harness;
            round_trip,
            history_order_and_filters,
            compare_and_set_on_the_head,
            head_writes_go_with_the_checkpoint,
            pending_writes_idempotency,
            delta_channels_across_snapshots,
            delete_thread,
            migrations_are_idempotent,
            decode_failure_is_an_error,
            prune_keeps_what_the_head_needs,
            pending_interrupt_inbox,
        );
    };
    (@tests $attrs:tt $harness:expr; $($name:ident),* $(,)?) => {
        $( $crate::checkpointer_conformance!(@one $attrs $harness; $name); )*
    };
    (@one [$($attr:tt)*] $harness:expr; $name:ident) => {
        #[::tokio::test]
        $($attr)*
        async fn $name() {
            $crate::testing::conformance::$name(&$harness).await;
        }
    };
}
