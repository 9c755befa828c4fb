//! The run queue on Postgres: `LISTEN`/`NOTIFY`.

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::RunQueue;
use super::postgres::backend;
use crate::error::StoreError;

/// The notification channel.
const CHANNEL: &str = "hitl_server_runs";

/// Wake-ups through `LISTEN`/`NOTIFY`: every process hears every wake-up and tries to
/// claim the thread's next run; the database lets one win.
pub struct PostgresQueue {
    pool: Pool,
    rx: AsyncMutex<mpsc::UnboundedReceiver<String>>,
    /// The connection that listens (kept open as long as the queue).
    _listener: tokio_postgres::Client,
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresQueue").finish_non_exhaustive()
    }
}

impl PostgresQueue {
    pub(super) async fn listen(
        config: tokio_postgres::Config,
        pool: Pool,
    ) -> Result<Self, StoreError> {
        let (client, mut connection) = config.connect(NoTls).await.map_err(backend)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // The periodic sweep still starts queued runs, only later.
                        tracing::error!(error = %e, "the run queue's LISTEN connection failed");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(backend)?;
        Ok(PostgresQueue {
            pool,
            rx: AsyncMutex::new(rx),
            _listener: client,
        })
    }
}

#[async_trait::async_trait]
impl RunQueue for PostgresQueue {
    async fn wake(&self, thread_id: &str) -> Result<(), StoreError> {
        self.pool
            .get()
            .await
            .map_err(backend)?
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &thread_id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn next_wake(&self) -> Option<String> {
        self.rx.lock().await.recv().await
    }
}
