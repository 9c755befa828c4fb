//! Checks of whole threads: delta chains, deletion, migrations, corruption, pruning,
//! the inbox.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Harness, put_chain};
use crate::checkpoint::{Checkpointer, ListFilter, Prune};
use crate::error::{CheckpointError, RunError};
use crate::{Command, NodeContext, RunConfig, START, State, StateGraph};

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
    // A saver that checksums its rows reports the damage before decoding.
    assert!(
        matches!(
            err,
            RunError::Checkpoint(CheckpointError::Decode { .. } | CheckpointError::Corrupt { .. })
        ),
        "expected a decode or corruption error, got {err}"
    );
    assert!(
        err.to_string()
            .contains("corrupt checkpoint data in thread `corrupt`"),
        "{err}"
    );
    let err = app.invoke(None, &cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Checkpoint(CheckpointError::Decode { .. } | CheckpointError::Corrupt { .. })
        ),
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

/// The run lease: one holder at a time, renewable only by its holder, taken over only
/// once expired, released only by its holder, and gone with the thread.
pub async fn run_leases<H: Harness>(h: &H) {
    use std::time::Duration;
    let saver = h.fresh().await;
    let long = Duration::from_secs(60);
    assert_eq!(saver.acquire_lease("t", "a", long).await.unwrap(), None);
    assert_eq!(
        saver
            .acquire_lease("t", "b", long)
            .await
            .unwrap()
            .as_deref(),
        Some("a"),
        "a second holder is refused and told who holds it"
    );
    assert_eq!(
        saver.acquire_lease("t", "a", long).await.unwrap(),
        None,
        "re-entrant"
    );
    assert_eq!(
        saver.acquire_lease("u", "b", long).await.unwrap(),
        None,
        "per thread"
    );
    assert!(saver.renew_lease("t", "a", long).await.unwrap());
    assert!(!saver.renew_lease("t", "b", long).await.unwrap());
    saver.release_lease("t", "b").await.unwrap();
    assert!(
        saver.acquire_lease("t", "b", long).await.unwrap().is_some(),
        "only the holder releases"
    );
    saver.release_lease("t", "a").await.unwrap();
    assert_eq!(saver.acquire_lease("t", "b", long).await.unwrap(), None);

    // An expired lease is taken over; its old holder can no longer renew it.
    let short = Duration::from_millis(50);
    assert_eq!(saver.acquire_lease("x", "a", short).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(saver.acquire_lease("x", "b", long).await.unwrap(), None);
    assert!(!saver.renew_lease("x", "a", long).await.unwrap());

    // Deleting a thread deletes its lease.
    saver.delete_thread("x").await.unwrap();
    assert_eq!(saver.acquire_lease("x", "c", long).await.unwrap(), None);

    // Ending a run gives its lease up (and only its own) and keeps what it wrote.
    assert_eq!(saver.acquire_lease("e", "a", long).await.unwrap(), None);
    let written = put_chain(&saver, "e", "", 2).await;
    saver.end_run("e", "b").await.unwrap();
    assert!(
        saver.acquire_lease("e", "b", long).await.unwrap().is_some(),
        "ending another holder's run leaves the lease"
    );
    saver.end_run("e", "a").await.unwrap();
    assert_eq!(saver.acquire_lease("e", "b", long).await.unwrap(), None);
    let head = saver.get("e", "", None, None).await.unwrap().expect("head");
    assert_eq!(Some(head.checkpoint.id), written.last().copied());
}

async fn ask(_: Arc<Doc>, cx: NodeContext) -> Result<DocUpdate, crate::NodeError> {
    let _: serde_json::Value = cx.interrupt(json!({"question": "keep going?"})).await?;
    Ok(DocUpdate::default().title("asked".to_owned()))
}

/// Every kind of damage to stored rows (records, blobs, pending writes), including
/// changes that still decode, is an error when the thread is read: never a default,
/// never a silent success.
pub async fn damage_to_stored_rows_is_detected<H: Harness>(h: &H) {
    let mut silent = Vec::new();
    for damage in super::Damage::ALL {
        let saver = h.fresh().await;
        let mut g = StateGraph::<Doc>::new();
        let write_line = g.add_node("write", |s: Arc<Doc>, _: NodeContext| async move {
            Ok(DocUpdate::default().lines(vec![format!("line {}", s.lines.len())]))
        });
        let ask = g.add_node("ask", ask);
        g.add_edge(START, write_line);
        g.add_edge(write_line, ask);
        g.add_edge(ask, crate::END);
        let app = g
            .compile()
            .checkpointer(saver.clone())
            .state_cache(0)
            .build()
            .expect("valid graph");
        let cfg = RunConfig::thread("damaged");
        let out = app.invoke(Doc::default(), &cfg).await.unwrap();
        assert!(out.is_interrupted());
        assert!(saver.get("damaged", "", None, None).await.is_ok());
        let Some(changed) = h.damage(&saver, "damaged", damage).await else {
            return; // this backend stores no bytes to damage
        };
        assert!(changed > 0, "{damage:?} changed no row");
        match saver.get("damaged", "", None, None).await {
            Err(CheckpointError::Corrupt { .. } | CheckpointError::Decode { .. }) => {}
            Err(other) => panic!("{damage:?}: an unexpected error: {other}"),
            Ok(_) => silent.push(damage),
        }
        assert!(
            app.get_state(&cfg).await.is_err(),
            "{damage:?}: get_state read damaged data"
        );
    }
    assert!(silent.is_empty(), "damage read back silently: {silent:?}");
}
