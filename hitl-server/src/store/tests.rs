//! The run store suite: every `RunStore` passes the same checks (SQLite in memory,
//! and Postgres in a schema of its own when built with `postgres`), plus what differs
//! by design (recovery after a stop; leases of shared stores).

use std::sync::Arc;

use serde_json::{Map, json};

use super::*;

fn run(thread: &str, id: &str) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        thread_id: thread.into(),
        assistant_id: "a".into(),
        graph_id: "g".into(),
        metadata: Map::new(),
        status: RunStatus::Pending,
        kwargs: json!({"input": {"n": 1}}),
        multitask_strategy: MultitaskStrategy::Enqueue,
        identity: None,
        created_at: 1,
        updated_at: 1,
    }
}

async fn runs_start_when_the_thread_is_free_and_queue_otherwise(s: &dyn RunStore) {
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
    let active: Vec<_> = s
        .active_runs("t")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.run_id, r.status))
        .collect();
    assert_eq!(
        active,
        [
            ("r1".to_owned(), RunStatus::Running),
            ("r3".to_owned(), RunStatus::Pending)
        ]
    );
    s.set_run_status("r1", RunStatus::Success).await.unwrap();
    let next = s.claim_next("t").await.unwrap().unwrap();
    assert_eq!(
        (next.run_id.as_str(), next.status),
        ("r3", RunStatus::Running)
    );
    assert_eq!(next.kwargs, json!({"input": {"n": 1}}));
    let listed: Vec<_> = s
        .list_runs("t", 10, 0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["r3", "r1"]);
    let done: Vec<_> = s
        .list_runs("t", 10, 0, Some(RunStatus::Success))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(done, ["r1"]);
    // Another thread is not held up.
    assert_eq!(
        s.insert_run(&run("u", "r4"), IfBusy::Reject).await.unwrap(),
        Admission::Started
    );
    s.delete_run("r4").await.unwrap();
    assert!(s.get_run("u", "r4").await.unwrap().is_none());
}

async fn threads_are_created_once_updated_and_deleted_with_their_runs(s: &dyn RunStore) {
    let t = ThreadRecord::new("t", Map::new());
    s.create_thread(t.clone(), IfExists::Raise).await.unwrap();
    assert!(matches!(
        s.create_thread(t.clone(), IfExists::Raise).await,
        Err(StoreError::ThreadExists { .. })
    ));
    let mut meta = Map::new();
    meta.insert("graph_id".into(), json!("agent"));
    let updated = s
        .update_thread(
            "t",
            ThreadUpdate::default()
                .metadata(meta)
                .status(ThreadStatus::Interrupted)
                .error(Some(json!({"error": "x"}))),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, ThreadStatus::Interrupted);
    let got = s.get_thread("t").await.unwrap().unwrap();
    assert_eq!(got, updated);
    assert_eq!(got.metadata["graph_id"], "agent");
    assert_eq!(
        s.create_thread(t, IfExists::DoNothing).await.unwrap(),
        got,
        "do_nothing returns the existing thread"
    );
    assert!(
        s.update_thread("nope", ThreadUpdate::default())
            .await
            .unwrap()
            .is_none()
    );
    s.insert_run(&run("t", "r1"), IfBusy::Reject).await.unwrap();
    assert!(s.delete_thread("t").await.unwrap());
    assert!(!s.delete_thread("t").await.unwrap());
    assert!(s.get_run("t", "r1").await.unwrap().is_none());
    assert!(s.active_runs("t").await.unwrap().is_empty());
}

async fn search_pages_after_filtering(s: &dyn RunStore) {
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
    s.update_thread("t3", ThreadUpdate::default().status(ThreadStatus::Busy))
        .await
        .unwrap();
    let busy = s
        .search_threads(&ThreadQuery {
            status: Some(ThreadStatus::Busy),
            ..ThreadQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(busy.total, 1);
    assert_eq!(busy.threads[0].thread_id, "t3");
}

#[test]
fn metadata_filters_are_containment() {
    let t = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
    assert!(json_contains(&t, &json!({})));
    assert!(json_contains(&t, &json!({"a": 1})));
    assert!(json_contains(&t, &json!({"b": {"c": [2]}})));
    assert!(!json_contains(&t, &json!({"b": {"c": [3]}})));
    assert!(!json_contains(&t, &json!({"a": "1"})));
    assert!(!json_contains(&t, &json!({"z": null})));
}

mod sqlite {
    use super::*;

    fn store() -> SqliteRunStore {
        SqliteRunStore::open_in_memory().unwrap()
    }

    #[tokio::test]
    async fn passes_the_suite() {
        runs_start_when_the_thread_is_free_and_queue_otherwise(&store()).await;
        threads_are_created_once_updated_and_deleted_with_their_runs(&store()).await;
        search_pages_after_filtering(&store()).await;
    }

    #[tokio::test]
    async fn recovery_fails_runs_a_stopped_server_left_running() {
        let s = store();
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
        assert_eq!(s.lease(), None, "one process owns a SQLite store");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use super::*;

    /// A schema of its own, dropped at the end.
    struct Schema(String);

    impl Schema {
        fn new() -> Self {
            Schema(format!(
                "hitl_server_test_{}",
                uuid::Uuid::now_v7().simple()
            ))
        }

        async fn store(&self, lease: Duration) -> Arc<dyn RunStore> {
            let url = std::env::var("HITL_TEST_POSTGRES_URL").expect(
                "HITL_TEST_POSTGRES_URL must be set for Postgres tests (e.g. postgres://postgres@127.0.0.1:5432/test)",
            );
            let store = Store::postgres(url)
                .schema(&self.0)
                .lease(lease)
                .connect()
                .await
                .unwrap();
            store.open().unwrap().store
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let url = std::env::var("HITL_TEST_POSTGRES_URL").unwrap_or_default();
            let schema = self.0.clone();
            // The test's runtime is gone: drop the schema on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok((client, conn)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                            .await;
                    }
                });
            })
            .join();
        }
    }

    #[tokio::test]
    async fn passes_the_suite() {
        for check in 0..3 {
            let schema = Schema::new();
            let s = schema.store(Duration::from_secs(30)).await;
            match check {
                0 => runs_start_when_the_thread_is_free_and_queue_otherwise(&*s).await,
                1 => threads_are_created_once_updated_and_deleted_with_their_runs(&*s).await,
                _ => search_pages_after_filtering(&*s).await,
            }
        }
    }

    #[tokio::test]
    async fn a_run_whose_process_stops_renewing_is_taken_over_once() {
        let schema = Schema::new();
        let lease = Duration::from_millis(300);
        let a = schema.store(lease).await;
        let b = schema.store(lease).await;
        assert_eq!(a.lease(), Some(lease));
        a.insert_run(&run("t", "r1"), IfBusy::Reject).await.unwrap();
        // A renews: nobody takes its run.
        for _ in 0..4 {
            tokio::time::sleep(lease / 3).await;
            a.renew_leases().await.unwrap();
            assert!(b.claim_orphans().await.unwrap().is_empty());
        }
        // A stops renewing (its process died): B takes the run over, once.
        tokio::time::sleep(lease + lease / 2).await;
        let taken = b.claim_orphans().await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            (taken[0].run_id.as_str(), taken[0].status),
            ("r1", RunStatus::Running)
        );
        assert!(b.claim_orphans().await.unwrap().is_empty());
        assert!(
            a.claim_orphans().await.unwrap().is_empty(),
            "B holds it now"
        );
        // Recovery on a shared store fails nothing and lists only free threads.
        b.insert_run(&run("t", "r2"), IfBusy::Enqueue)
            .await
            .unwrap();
        let rec = b.recover().await.unwrap();
        assert!(rec.failed.is_empty());
        assert!(rec.pending_threads.is_empty(), "t has a running run");
        b.set_run_status("r1", RunStatus::Success).await.unwrap();
        assert_eq!(b.recover().await.unwrap().pending_threads, ["t"]);
    }
}
