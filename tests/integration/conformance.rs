//! The checkpointer conformance suite, run against every backend.

mod memory {
    hitl_runtime::checkpointer_conformance!(hitl_runtime::testing::conformance::MemoryHarness);
}

mod sqlite {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hitl_runtime::SqliteSaver;
    use hitl_runtime::testing::conformance::{Damage, Harness};

    /// Each saver gets a fresh file in a directory removed when the harness drops.
    pub(crate) struct SqliteFiles {
        dir: tempfile::TempDir,
        next: AtomicUsize,
    }

    impl SqliteFiles {
        pub(crate) fn new() -> Self {
            SqliteFiles {
                dir: tempfile::tempdir().unwrap(),
                next: AtomicUsize::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl Harness for SqliteFiles {
        type Saver = SqliteSaver;

        async fn fresh(&self) -> SqliteSaver {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            SqliteSaver::open(self.dir.path().join(format!("{n}.db")))
                .await
                .unwrap()
        }

        async fn reopen(&self, saver: &SqliteSaver) -> SqliteSaver {
            SqliteSaver::open(saver.location()).await.unwrap()
        }

        async fn corrupt_blob(&self, saver: &SqliteSaver, thread: &str, channel: &str) {
            assert!(saver.corrupt_blobs(thread, channel) > 0);
        }

        async fn damage(&self, saver: &SqliteSaver, thread: &str, damage: Damage) -> Option<u64> {
            let sql = damage.sql().replace("{s}", "").replace("{t}", thread);
            Some(saver.execute_unchecked(&sql) as u64)
        }
    }

    hitl_runtime::checkpointer_conformance!(SqliteFiles::new());
}

mod postgres {
    use crate::pg::PgSchemas;

    hitl_runtime::checkpointer_conformance!(
        PgSchemas::new();
        #[cfg_attr(not(hitl_postgres), ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres suite")]
    );

    mod every_write {
        use hitl_runtime::checkpoint::PgDurability;

        use crate::pg::PgSchemas;

        hitl_runtime::checkpointer_conformance!(
            PgSchemas::with(PgDurability::EveryWrite);
            #[cfg_attr(not(hitl_postgres), ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres suite")]
        );
    }
}

/// Migrations beyond the conformance suite: a database from a newer build is refused,
/// and several processes may set up one database at once.
mod migrations {
    use hitl_runtime::{CheckpointError, PostgresSaver, SqliteSaver};

    use crate::pg::{PgSchemas, url};

    #[tokio::test]
    async fn sqlite_refuses_a_database_from_a_newer_build() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.db");
        drop(SqliteSaver::open(&path).await.unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO hitl_schema_migrations (version) VALUES (?1)",
            [SqliteSaver::SCHEMA_VERSION + 1],
        )
        .unwrap();
        drop(conn);
        let err = SqliteSaver::open(&path).await.unwrap_err();
        assert!(
            matches!(err, CheckpointError::SchemaTooNew { found, supported }
                if found == SqliteSaver::SCHEMA_VERSION + 1 && supported == SqliteSaver::SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().ends_with("upgrade hitl-runtime"), "{err}");
    }

    #[tokio::test]
    #[cfg_attr(
        not(hitl_postgres),
        ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres suite"
    )]
    async fn postgres_refuses_a_schema_from_a_newer_build() {
        let schemas = PgSchemas::new();
        let schema = schemas.name();
        let saver = schemas.saver(&schema).await;
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .execute(
                &format!("INSERT INTO \"{schema}\".hitl_schema_migrations (version) VALUES ($1)"),
                &[&(PostgresSaver::SCHEMA_VERSION + 1)],
            )
            .await
            .unwrap();
        drop(saver);
        let err = PostgresSaver::builder(url())
            .schema(schema.as_str())
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, CheckpointError::SchemaTooNew { found, .. }
                if found == PostgresSaver::SCHEMA_VERSION + 1),
            "{err}"
        );
    }

    #[tokio::test]
    #[cfg_attr(
        not(hitl_postgres),
        ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres suite"
    )]
    async fn postgres_setup_from_several_processes_at_once_applies_each_migration_once() {
        let schemas = PgSchemas::new();
        let schema = schemas.name();
        // Eight savers (eight pools, as eight processes would have) set up one fresh
        // schema at the same moment.
        let savers = futures_util::future::join_all((0..8).map(|_| schemas.saver(&schema))).await;
        assert_eq!(savers.len(), 8);
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let versions: Vec<i64> = client
            .query(
                &format!(
                    "SELECT version FROM \"{schema}\".hitl_schema_migrations ORDER BY version"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            versions,
            (1..=PostgresSaver::SCHEMA_VERSION).collect::<Vec<_>>()
        );
        // And every one of them works on it.
        for saver in &savers {
            assert_eq!(
                hitl_runtime::Checkpointer::head(saver, "nobody", "")
                    .await
                    .unwrap(),
                None
            );
        }
    }
}
