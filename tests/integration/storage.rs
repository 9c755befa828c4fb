//! Storage growth: append channels are stored as deltas, so bytes per step stay flat.

use std::sync::Arc;

use hitl_runtime::{END, InMemorySaver, RunConfig, RunError, START, State, StateGraph};
use serde::{Deserialize, Serialize};

fn append_by_hand(list: &mut Vec<String>, items: Vec<String>) {
    list.extend(items);
}

/// `log` is an `append` channel: stored as deltas.
#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Deltas {
    #[state(reducer = append)]
    log: Vec<String>,
}

/// The same list with a custom reducer: stored whole at every step (the control).
#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Whole {
    #[state(reducer = append_by_hand)]
    log: Vec<String>,
}

const ITEM: &str =
    "an entry of about a hundred bytes, like a short chat message or a tool result with some text";

/// Runs `steps` supersteps of one node appending one item, 100 at a time; returns the
/// bytes stored after each block of 100.
async fn growth<S: State>(update: fn(usize) -> S::Update, steps: usize) -> Vec<usize>
where
    S::Update: Into<hitl_runtime::NodeOutput<S>>,
{
    let saver = InMemorySaver::new();
    let mut g = StateGraph::<S>::new();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let node = g.add_node("step", move |_, _| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok(update(n)) }
    });
    g.add_edge(START, node);
    g.add_edge(node, node);
    let _ = END;
    let app = g.compile().checkpointer(saver.clone()).build().unwrap();
    let cfg = RunConfig::thread("long").recursion_limit(100);
    let mut sizes = Vec::new();
    let mut first = true;
    while sizes.len() < steps / 100 {
        let run = if first {
            first = false;
            app.invoke(S::default(), &cfg).await
        } else {
            app.invoke(None, &cfg).await
        };
        assert!(matches!(run, Err(RunError::RecursionLimit { .. })));
        sizes.push(saver.stored_bytes("long").total());
    }
    sizes
}

fn increments(sizes: &[usize]) -> Vec<usize> {
    let mut prev = 0;
    sizes
        .iter()
        .map(|s| {
            let d = s - prev;
            prev = *s;
            d
        })
        .collect()
}

#[tokio::test]
async fn a_500_step_thread_stores_flat_bytes_per_step() {
    let deltas = growth::<Deltas>(
        |n| DeltasUpdate::default().log(vec![format!("{n} {ITEM}")]),
        500,
    )
    .await;
    let whole = growth::<Whole>(
        |n| WholeUpdate::default().log(vec![format!("{n} {ITEM}")]),
        500,
    )
    .await;
    let d = increments(&deltas);
    let w = increments(&whole);
    // Deltas: the last hundred steps cost about what the first hundred did (a snapshot
    // of the list may land in any block, hence the slack).
    assert!(
        d[4] <= d[0] * 2,
        "bytes per 100 steps grew from {} to {} (all: {d:?})",
        d[0],
        d[4]
    );
    // The control rewrites the list every step, so its blocks grow with the list:
    // this is what the assertion above would see without deltas.
    assert!(w[4] >= w[0] * 5, "control: {w:?}");
    assert!(
        deltas[4] * 10 < whole[4],
        "deltas {deltas:?} vs whole {whole:?}"
    );
}

#[tokio::test]
async fn a_thread_stored_as_deltas_reads_back_exactly() {
    let saver = InMemorySaver::new();
    let mut g = StateGraph::<Deltas>::new();
    let node = g.add_node("step", |s: Arc<Deltas>, _| async move {
        Ok(DeltasUpdate::default().log(vec![format!("{} {ITEM}", s.log.len())]))
    });
    g.add_edge(START, node);
    g.add_edge(node, node);
    let app = g
        .compile()
        .checkpointer(saver.clone())
        .state_cache(0)
        .build()
        .unwrap();
    let cfg = RunConfig::thread("exact").recursion_limit(300);
    let _ = app.invoke(Deltas::default(), &cfg).await;
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.values.log.len(), 300);
    for (i, item) in state.values.log.iter().enumerate() {
        assert_eq!(item, &format!("{i} {ITEM}"));
    }
    // Every checkpoint of the history rebuilds to its own length.
    let history = app.get_state_history(&cfg).await.unwrap();
    for snapshot in history.iter().filter(|s| s.step >= 0) {
        assert_eq!(snapshot.values.log.len() as i64, snapshot.step + 1);
    }
}

/// How many run-end syncs a SQLite file has seen (`None`: never).
fn syncs(path: &std::path::Path) -> Option<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT n FROM hitl_flush WHERE id = 1", [], |r| r.get(0))
        .ok()
}

#[tokio::test]
async fn sqlite_makes_each_run_durable_once_before_it_returns() {
    use hitl_runtime::SqliteSaver;
    use hitl_runtime::checkpoint::SqliteDurability;

    let dir = tempfile::tempdir().unwrap();
    let app_on = |saver: SqliteSaver| {
        let mut g = StateGraph::<Deltas>::new();
        let node = g.add_node("step", |_, _| async {
            Ok(DeltasUpdate::default().log(vec!["x".into()]))
        });
        g.add_edge(START, node);
        g.add_edge(node, END);
        g.compile().checkpointer(saver).build().unwrap()
    };
    // The default: one synchronous commit per run that wrote something, however many
    // checkpoints it wrote.
    let path = dir.path().join("run-end.db");
    let saver = SqliteSaver::open(&path).await.unwrap();
    assert_eq!(saver.durability(), SqliteDurability::RunEnd);
    let app = app_on(saver);
    let cfg = RunConfig::thread("t");
    app.invoke(Deltas::default(), &cfg).await.unwrap();
    assert_eq!(syncs(&path), Some(1));
    app.invoke(Deltas::default(), &cfg).await.unwrap();
    assert_eq!(syncs(&path), Some(2));
    // A run that writes nothing does not sync.
    app.get_state(&cfg).await.unwrap();
    assert_eq!(syncs(&path), Some(2));
    // `Normal` never does.
    let path = dir.path().join("normal.db");
    let app = app_on(SqliteSaver::open_with(&path, SqliteDurability::Normal).unwrap());
    app.invoke(Deltas::default(), &cfg).await.unwrap();
    assert_eq!(syncs(&path), None);
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Before {
    #[state(reducer = append)]
    messages: Vec<String>,
    step: u32,
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Renamed {
    #[state(reducer = append)]
    history: Vec<String>,
    step: u32,
}

async fn write_before(
    _: Arc<Before>,
    _: hitl_runtime::NodeContext,
) -> Result<BeforeUpdate, hitl_runtime::NodeError> {
    Ok(BeforeUpdate::default()
        .messages(vec!["hello".into()])
        .step(1))
}

async fn write_renamed(
    _: Arc<Renamed>,
    _: hitl_runtime::NodeContext,
) -> Result<RenamedUpdate, hitl_runtime::NodeError> {
    Ok(RenamedUpdate::default().step(2))
}

#[tokio::test]
async fn a_channel_the_state_does_not_have_or_lacks_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.db");
    let mut g = StateGraph::<Before>::new();
    let n = g.add_node("write", write_before);
    g.add_edge(START, n);
    g.add_edge(n, END);
    let before = g
        .compile()
        .checkpointer(hitl_runtime::SqliteSaver::open(&path).await.unwrap())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("t");
    before.invoke(Before::default(), &cfg).await.unwrap();

    // The same thread read with a state whose `messages` field was renamed: an error
    // naming the channel, never an empty conversation.
    let mut g = StateGraph::<Renamed>::new();
    let n = g.add_node("write", write_renamed);
    g.add_edge(START, n);
    g.add_edge(n, END);
    let renamed = g
        .compile()
        .checkpointer(hitl_runtime::SqliteSaver::open(&path).await.unwrap())
        .build()
        .unwrap();
    let err = renamed.get_state(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("has channel `messages`, which the state type") && text.contains("Renamed"),
        "{text}"
    );
    let err = renamed.invoke(None, &cfg).await.unwrap_err();
    assert!(matches!(
        err,
        RunError::Checkpoint(hitl_runtime::CheckpointError::Corrupt { .. })
    ));
    assert!(
        renamed.get_state_history(&cfg).await.is_err(),
        "history fails too"
    );
    // The original state still reads it.
    assert_eq!(
        before.get_state(&cfg).await.unwrap().values.messages,
        ["hello"]
    );
}

#[tokio::test]
async fn an_empty_or_foreign_database_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = hitl_runtime::SqliteSaver::open(&empty).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("empty.db") && text.contains("0 bytes"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "left untouched"
    );

    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "these are my notes, not a database ".repeat(200)).unwrap();
    let err = hitl_runtime::SqliteSaver::open(&foreign).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("notes.txt") && text.contains("not a database"),
        "{text}"
    );
}

/// Rows written before checksums existed get one when the database is migrated.
async fn checksums_are_backfilled_on(
    saver: Arc<dyn hitl_runtime::Checkpointer>,
    undo_migration: impl AsyncFnOnce(),
    reopen: impl AsyncFnOnce() -> Arc<dyn hitl_runtime::Checkpointer>,
) {
    let compile = |saver: Arc<dyn hitl_runtime::Checkpointer>| {
        let mut g = StateGraph::<Before>::new();
        let n = g.add_node("write", write_before);
        g.add_edge(START, n);
        g.add_edge(n, END);
        g.compile()
            .checkpointer_arc(saver)
            .state_cache(0)
            .build()
            .unwrap()
    };
    let app = compile(saver);
    let cfg = RunConfig::thread("old");
    app.invoke(Before::default(), &cfg).await.unwrap();
    drop(app);
    undo_migration().await;
    let app = compile(reopen().await);
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.values.messages, ["hello"]);
    assert_eq!(app.get_state_history(&cfg).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_rows_from_before_checksums_are_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let saver = hitl_runtime::SqliteSaver::open(&path).await.unwrap();
    let handle = saver.clone();
    checksums_are_backfilled_on(
        Arc::new(saver),
        async || {
            for sql in [
                "ALTER TABLE hitl_checkpoints DROP COLUMN sum",
                "ALTER TABLE hitl_blobs DROP COLUMN sum",
                "ALTER TABLE hitl_writes DROP COLUMN sum",
                // A database from before checksums has no later tables either.
                "DROP TABLE hitl_decisions",
                "DELETE FROM hitl_schema_migrations WHERE version >= 4",
            ] {
                handle.execute_unchecked(sql);
            }
        },
        async || {
            let saver: Arc<dyn hitl_runtime::Checkpointer> =
                Arc::new(hitl_runtime::SqliteSaver::open(&path).await.unwrap());
            saver
        },
    )
    .await;
}

#[tokio::test]
#[cfg_attr(
    not(hitl_postgres),
    ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres tests"
)]
async fn postgres_rows_from_before_checksums_are_backfilled() {
    let schemas = crate::pg::PgSchemas::new();
    let schema = schemas.name();
    let saver = schemas.saver(&schema).await;
    let handle = saver.clone();
    checksums_are_backfilled_on(
        Arc::new(saver),
        async || {
            for sql in [
                "ALTER TABLE {s}.hitl_checkpoints DROP COLUMN sum",
                "ALTER TABLE {s}.hitl_blobs DROP COLUMN sum",
                "ALTER TABLE {s}.hitl_writes DROP COLUMN sum",
                // A database from before checksums has no later tables either.
                "DROP TABLE {s}.hitl_decisions",
                "DROP FUNCTION {s}.hitl_decisions_append_only()",
                "DELETE FROM {s}.hitl_schema_migrations WHERE version >= 4",
            ] {
                handle.execute_unchecked(sql).await;
            }
        },
        async || {
            let saver: Arc<dyn hitl_runtime::Checkpointer> = Arc::new(schemas.saver(&schema).await);
            saver
        },
    )
    .await;
}
