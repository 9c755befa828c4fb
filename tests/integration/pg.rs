//! Postgres test helpers: a schema per saver, dropped at the end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hitl_runtime::PostgresSaver;
use hitl_runtime::checkpoint::PgDurability;
use hitl_runtime::testing::conformance::{Damage, Harness};

/// The database URL (`HITL_TEST_POSTGRES_URL`).
pub(crate) fn url() -> String {
    std::env::var("HITL_TEST_POSTGRES_URL")
        .expect("HITL_TEST_POSTGRES_URL must be set for Postgres tests (e.g. postgres://postgres@127.0.0.1:5432/test)")
}

/// Gives each saver its own schema; drops them all when dropped.
pub(crate) struct PgSchemas {
    durability: PgDurability,
    schemas: Mutex<Vec<String>>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl PgSchemas {
    pub(crate) fn new() -> Self {
        Self::with(PgDurability::RunEnd)
    }

    pub(crate) fn with(durability: PgDurability) -> Self {
        PgSchemas {
            durability,
            schemas: Mutex::new(Vec::new()),
        }
    }

    /// A new unique schema name.
    pub(crate) fn name(&self) -> String {
        let name = format!(
            "hitl_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            uuid_suffix()
        );
        self.schemas.lock().unwrap().push(name.clone());
        name
    }

    pub(crate) async fn saver(&self, schema: &str) -> PostgresSaver {
        PostgresSaver::builder(url())
            .schema(schema)
            .pool_size(4)
            .durability(self.durability)
            .connect()
            .await
            .unwrap()
    }
}

fn uuid_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}")
}

impl Drop for PgSchemas {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        if schemas.is_empty() {
            return;
        }
        // Dropping happens outside any async context we can block: use a thread.
        let url = url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                for s in schemas {
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
                        .await
                        .unwrap();
                }
            });
        })
        .join()
        .unwrap();
    }
}

#[async_trait::async_trait]
impl Harness for PgSchemas {
    type Saver = PostgresSaver;

    async fn fresh(&self) -> PostgresSaver {
        let schema = self.name();
        self.saver(&schema).await
    }

    async fn reopen(&self, saver: &PostgresSaver) -> PostgresSaver {
        self.saver(saver.schema()).await
    }

    async fn corrupt_blob(&self, saver: &PostgresSaver, thread: &str, channel: &str) {
        assert!(saver.corrupt_blobs(thread, channel).await > 0);
    }

    async fn damage(&self, saver: &PostgresSaver, thread: &str, damage: Damage) -> Option<u64> {
        let sql = damage.sql().replace("{s}", "{s}.").replace("{t}", thread);
        Some(saver.execute_unchecked(&sql).await)
    }
}

async fn sql(statement: &str) {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(statement).await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(hitl_postgres),
    ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres tests"
)]
async fn postgres_errors_keep_the_servers_message_and_a_changed_column_is_an_error() {
    use hitl_runtime::checkpoint::ListFilter;
    use hitl_runtime::{CheckpointError, Checkpointer};

    let schemas = PgSchemas::new();
    let schema = schemas.name();
    let saver = schemas.saver(&schema).await;
    let graph = {
        let model =
            hitl_runtime::testing::ScriptedModel::turns([hitl_runtime::Message::assistant("hi")]);
        hitl_runtime::agent::create_agent(model)
            .checkpointer(schemas.saver(&schema).await)
            .build()
            .unwrap()
    };
    let cfg = hitl_runtime::RunConfig::thread("t");
    graph
        .invoke(hitl_runtime::Message::user("hello"), &cfg)
        .await
        .unwrap();

    // A record that is not JSON: the message says what Postgres said.
    sql(&format!(
        "UPDATE \"{schema}\".hitl_checkpoints SET record = 'not json' WHERE thread = 't'"
    ))
    .await;
    let filter = ListFilter {
        metadata: [("k".to_owned(), serde_json::json!(1))]
            .into_iter()
            .collect(),
        ..ListFilter::default()
    };
    let err = saver.list("t", "", &filter).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Backend(_)));
    let text = err.to_string();
    assert!(
        text.contains("invalid input syntax for type json"),
        "the cause is in the message: {text}"
    );
    assert!(std::error::Error::source(&err).is_some());

    // A column whose type changed under the saver: an error naming it, never a panic.
    sql(&format!(
        "ALTER TABLE \"{schema}\".hitl_heads ALTER COLUMN head TYPE bytea USING head::bytea"
    ))
    .await;
    let err = saver.head("t", "").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bytea"), "{text}");
}
