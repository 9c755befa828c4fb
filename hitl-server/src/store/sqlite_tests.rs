//! Tests of the SQLite run store.

use super::*;
use crate::store::MultitaskStrategy;
use serde_json::{Map, json};

fn run(thread: &str, id: &str) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        thread_id: thread.into(),
        assistant_id: "a".into(),
        graph_id: "g".into(),
        metadata: Map::new(),
        status: RunStatus::Pending,
        kwargs: json!({}),
        multitask_strategy: MultitaskStrategy::Enqueue,
        identity: None,
        created_at: 1,
        updated_at: 1,
    }
}

#[tokio::test]
async fn runs_start_when_the_thread_is_free_and_queue_otherwise() {
    let s = SqliteRunStore::open_in_memory().unwrap();
    assert_eq!(
        s.insert_run(&run("t", "r1"), IfBusy::Reject).await.unwrap(),
        Admission::Started
    );
    assert_eq!(
        s.insert_run(&run("t", "r2"), IfBusy::Reject).await.unwrap(),
        Admission::Busy
    );
    assert_eq!(
        s.insert_run(&run("t", "r3"), IfBusy::Enqueue)
            .await
            .unwrap(),
        Admission::Queued
    );
    assert!(s.get_run("t", "r2").await.unwrap().is_none());
    // r1 is running: nothing to claim.
    assert!(s.claim_next("t").await.unwrap().is_none());
    s.set_run_status("r1", RunStatus::Success).await.unwrap();
    let next = s.claim_next("t").await.unwrap().unwrap();
    assert_eq!(
        (next.run_id.as_str(), next.status),
        ("r3", RunStatus::Running)
    );
    let listed: Vec<_> = s
        .list_runs("t", 10, 0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["r3", "r1"]);
}

#[tokio::test]
async fn recovery_fails_runs_a_stopped_server_left_running() {
    let s = SqliteRunStore::open_in_memory().unwrap();
    s.create_thread(ThreadRecord::new("t", Map::new()), IfExists::Raise)
        .await
        .unwrap();
    s.insert_run(&run("t", "r1"), IfBusy::Reject).await.unwrap();
    s.insert_run(&run("t", "r2"), IfBusy::Enqueue)
        .await
        .unwrap();
    let rec = s.recover().await.unwrap();
    assert_eq!(rec.failed.len(), 1);
    assert_eq!(rec.pending_threads, ["t"]);
    let t = s.get_thread("t").await.unwrap().unwrap();
    assert_eq!(t.status, ThreadStatus::Error);
    assert_eq!(
        s.get_run("t", "r1").await.unwrap().unwrap().status,
        RunStatus::Error
    );
}

#[test]
fn metadata_filters_are_containment() {
    let t = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
    assert!(contains(&t, &json!({})));
    assert!(contains(&t, &json!({"a": 1})));
    assert!(contains(&t, &json!({"b": {"c": [2]}})));
    assert!(!contains(&t, &json!({"b": {"c": [3]}})));
    assert!(!contains(&t, &json!({"a": "1"})));
    assert!(!contains(&t, &json!({"z": null})));
}

#[tokio::test]
async fn search_pages_after_filtering() {
    let s = SqliteRunStore::open_in_memory().unwrap();
    for i in 0..5 {
        let mut t = ThreadRecord::new(format!("t{i}"), Map::new());
        t.created_at = i;
        t.metadata.insert("even".into(), json!(i % 2 == 0));
        s.create_thread(t, IfExists::Raise).await.unwrap();
    }
    let mut q = ThreadQuery::default();
    q.metadata.insert("even".into(), json!(true));
    q.limit = 2;
    q.offset = 1;
    let page = s.search_threads(&q).await.unwrap();
    assert_eq!(page.total, 3);
    let ids: Vec<_> = page.threads.iter().map(|t| t.thread_id.as_str()).collect();
    assert_eq!(ids, ["t2", "t0"]);
}
