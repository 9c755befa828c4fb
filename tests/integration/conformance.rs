//! The checkpointer conformance suite, run against every backend.

mod memory {
    hitl_runtime::checkpointer_conformance!(hitl_runtime::checkpoint::conformance::MemoryHarness);
}

mod sqlite {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hitl_runtime::SqliteSaver;
    use hitl_runtime::checkpoint::conformance::Harness;

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
