//! [`Server`] and its builder.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Mutex as AsyncMutex;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::error::{ApiError, BuildError, ServeError};
use crate::graph::JsonGraph;
use crate::live::Lives;
use crate::store::{RunQueue, RunStore, Store};

/// The namespace of assistant ids: `uuid5(NAMESPACE, graph_id)`, as LangGraph Server.
const ASSISTANT_NAMESPACE: Uuid = Uuid::from_u128(0x6ba7b821_9dad_11d1_80b4_00c04fd430c8);

/// The id of a graph's default assistant: `uuid5(6ba7b821-9dad-11d1-80b4-00c04fd430c8,
/// graph_id)`, the same as LangGraph Server's, so clients that hard-code it work.
pub fn assistant_id(graph_id: &str) -> Uuid {
    Uuid::new_v5(&ASSISTANT_NAMESPACE, graph_id.as_bytes())
}

/// A registered graph and its default assistant.
pub(crate) struct Registered {
    pub(crate) graph_id: String,
    pub(crate) assistant_id: String,
    pub(crate) graph: Arc<dyn JsonGraph>,
}

/// How many admission locks threads are spread over.
const ADMISSION_STRIPES: usize = 64;

/// Everything the handlers share.
pub(crate) struct Inner {
    pub(crate) graphs: Vec<Registered>,
    pub(crate) store: Arc<dyn RunStore>,
    pub(crate) queue: Arc<dyn RunQueue>,
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) lives: Lives,
    pub(crate) started_at: i64,
    admission: Vec<AsyncMutex<()>>,
    worker: OnceLock<()>,
    sweeper: OnceLock<()>,
    expirer: OnceLock<()>,
    expire_every: Duration,
    pub(crate) me: Weak<Inner>,
}

impl Inner {
    /// The lock serializing run admission on a thread (checking for active runs,
    /// validating a resume, recording the run).
    pub(crate) fn admission(&self, thread_id: &str) -> &AsyncMutex<()> {
        let h = thread_id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.admission[h % ADMISSION_STRIPES]
    }

    /// A graph by id.
    pub(crate) fn graph(&self, graph_id: &str) -> Option<&Registered> {
        self.graphs.iter().find(|g| g.graph_id == graph_id)
    }

    /// An assistant by UUID or graph name; 422 for neither, 404 for an unknown UUID.
    pub(crate) fn assistant(&self, id: &str) -> Result<&Registered, ApiError> {
        if let Some(g) = self.graph(id) {
            return Ok(g);
        }
        match Uuid::parse_str(id) {
            Ok(u) => {
                let u = u.to_string();
                self.graphs
                    .iter()
                    .find(|g| g.assistant_id == u)
                    .ok_or_else(|| ApiError::NotFound(format!("Assistant {id} not found")))
            }
            Err(_) => Err(ApiError::Unprocessable(format!(
                "Invalid assistant: '{id}'. Must be either:\n- A valid assistant UUID, or\n- One of the registered graphs: {}",
                self.graphs
                    .iter()
                    .map(|g| g.graph_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Starts the worker that runs queued runs, once.
    /// With a store shared by several processes: renews this process's runs every
    /// third of the lease, takes over the runs of processes that stopped, and starts
    /// queued runs whose wake-up was missed.
    pub(crate) fn ensure_sweeper(&self) {
        let Some(lease) = self.store.lease() else {
            return;
        };
        let every = (lease / 3).max(Duration::from_millis(10));
        self.sweeper.get_or_init(|| {
            self.every(every, |inner| async move {
                if let Err(e) = inner.store.renew_leases().await {
                    tracing::error!(error = %e, "could not renew the leases of this process's runs");
                }
                match inner.store.claim_orphans().await {
                    Ok(runs) => {
                        for run in runs {
                            tokio::spawn(crate::runs::continue_orphan(inner.clone(), run));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not look for runs of stopped processes"),
                }
                match inner.store.recover().await {
                    Ok(recovery) => {
                        for thread_id in recovery.pending_threads {
                            crate::runs::start_next(&inner, &thread_id).await;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not look for queued runs"),
                }
            });
        });
    }

    /// Runs `job` every `period` on a task of its own, until the server is dropped.
    fn every<F, Fut>(&self, period: Duration, job: F)
    where
        F: Fn(Arc<Inner>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = me.upgrade() else { break };
                job(inner).await;
            }
        });
    }

    /// Starts the task that applies the timeout answers of expired reviews, once:
    /// every `expire_every`, each graph's due interrupts are answered by a run
    /// admitted like any other (recorded, streamed, refused while the thread is busy
    /// and tried again on the next tick), decided by the system.
    pub(crate) fn ensure_expirer(&self) {
        self.expirer.get_or_init(|| {
            self.every(self.expire_every, |inner| async move {
                inner.expire_due(std::time::SystemTime::now()).await;
            });
        });
    }

    /// Admits a run answering every interrupt due at `now` with its timeout answer.
    pub(crate) async fn expire_due(self: &Arc<Self>, now: std::time::SystemTime) {
        let at = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for reg in &self.graphs {
            let due = match reg.graph.due_timeouts(now).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(graph = %reg.graph_id, error = %e, "could not list expired reviews");
                    continue;
                }
            };
            for (thread_id, answers) in due {
                let resume: serde_json::Map<String, serde_json::Value> = answers
                    .into_iter()
                    .map(|(id, value)| (id.to_string(), value))
                    .collect();
                let mut req: crate::runs::RunCreate =
                    match serde_json::from_value(serde_json::json!({
                        "assistant_id": reg.graph_id,
                        "command": {"resume": resume},
                        "multitask_strategy": "reject",
                    })) {
                        Ok(req) => req,
                        Err(e) => {
                            tracing::error!(error = %e, "could not build a timeout run");
                            continue;
                        }
                    };
                req.timeout_at = Some(at);
                let system = crate::auth::Identity::new("system:timeout");
                if let Err(e) = crate::runs::admit(self, &system, &thread_id, req).await {
                    tracing::debug!(thread = %thread_id, error = ?e, "timeout not applied yet");
                }
            }
        }
    }

    pub(crate) fn ensure_worker(&self) {
        self.ensure_sweeper();
        self.ensure_expirer();
        self.worker.get_or_init(|| {
            let me = self.me.clone();
            let queue = self.queue.clone();
            tokio::spawn(async move {
                while let Some(thread_id) = queue.next_wake().await {
                    let Some(inner) = me.upgrade() else { break };
                    crate::runs::start_next(&inner, &thread_id).await;
                }
            });
        });
    }
}

/// The LangGraph Server HTTP API over hitl graphs.
///
/// ```no_run
/// # async fn run(agent: hitl_runtime::agent::Agent) -> Result<(), Box<dyn std::error::Error>> {
/// use hitl_server::{Server, Store};
/// let server = Server::builder()
///     .graph("agent", agent)
///     .store(Store::sqlite("hitl.db"))
///     .build()?;
/// server.serve("127.0.0.1:2024").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field(
                "graphs",
                &self
                    .inner
                    .graphs
                    .iter()
                    .map(|g| g.graph_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("store", &self.inner.store)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The API as an axum router, to serve yourself or to drive in tests. Queued runs
    /// start from the first request on, within the runtime serving them.
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.inner.clone())
    }

    /// Continues what a previous server process left: runs it left running are
    /// recorded as failed (their threads `error`), pending runs are started.
    /// [`serve`](Self::serve) calls it; call it yourself when you serve
    /// [`router`](Self::router) on your own.
    pub async fn recover(&self) -> Result<(), ServeError> {
        self.inner.ensure_sweeper();
        self.inner.ensure_expirer();
        let recovery = self.inner.store.recover().await?;
        for run in &recovery.failed {
            tracing::warn!(run = %run.run_id, thread = %run.thread_id, "a run was running when the server stopped; recorded as failed");
        }
        if !recovery.pending_threads.is_empty() {
            self.inner.ensure_worker();
            for t in recovery.pending_threads {
                self.inner.queue.wake(&t).await?;
            }
        }
        Ok(())
    }

    /// Serves the API until the process stops. Takes a bound
    /// [`TcpListener`](tokio::net::TcpListener), a [`SocketAddr`] or an address
    /// string such as `"127.0.0.1:2024"`.
    pub async fn serve(self, listener: impl Listen) -> Result<(), ServeError> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves the API until `signal` completes, then finishes the requests in flight.
    pub async fn serve_with_shutdown(
        self,
        listener: impl Listen,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let listener = listener.listen().await?;
        self.recover().await?;
        tracing::info!(addr = ?listener.local_addr().ok(), "hitl-server listening");
        // Small responses go out at once, not after the peer's delayed ACK (~40 ms).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .await?;
        Ok(())
    }
}

/// Something [`Server::serve`] can listen on.
pub trait Listen: Send {
    /// Binds (if needed).
    fn listen(self) -> impl Future<Output = std::io::Result<TcpListener>> + Send;
}

impl Listen for TcpListener {
    async fn listen(self) -> std::io::Result<TcpListener> {
        Ok(self)
    }
}

impl Listen for SocketAddr {
    async fn listen(self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self).await
    }
}

impl Listen for &str {
    async fn listen(self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self).await
    }
}

impl Listen for String {
    async fn listen(self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.as_str()).await
    }
}

/// Configures a [`Server`]: graphs, the store, auth.
#[derive(Default)]
pub struct ServerBuilder {
    graphs: Vec<(String, Arc<dyn JsonGraph>)>,
    store: Option<Store>,
    auth: Option<Arc<dyn Authenticator>>,
    expire_every: Option<Duration>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field(
                "graphs",
                &self.graphs.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("store", &self.store)
            .field("auth", &self.auth)
            .finish()
    }
}

fn valid_graph_id(id: &str) -> bool {
    !id.is_empty()
        && Uuid::parse_str(id).is_err()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl ServerBuilder {
    /// Registers a graph (any [`CompiledGraph`](hitl_runtime::CompiledGraph), or
    /// another [`JsonGraph`]) under `graph_id`, with a default assistant whose id is
    /// [`assistant_id`]`(graph_id)`. Runs name it by either.
    pub fn graph(mut self, graph_id: impl Into<String>, graph: impl JsonGraph) -> Self {
        self.graphs.push((graph_id.into(), Arc::new(graph)));
        self
    }

    /// Where threads and runs are recorded (default: [`Store::default`], the SQLite
    /// file `hitl-server.db`).
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Who may call the API (default: anyone).
    pub fn auth(mut self, auth: impl Authenticator) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// How often expired reviews get their timeout answers (default: every 10
    /// seconds). A review is never answered before its deadline; it may be answered up
    /// to this much after it.
    pub fn expire_every(mut self, every: Duration) -> Self {
        self.expire_every = Some(every);
        self
    }

    /// Checks the configuration and opens the store.
    pub fn build(self) -> Result<Server, BuildError> {
        if self.graphs.is_empty() {
            return Err(BuildError::NoGraphs);
        }
        let mut graphs: Vec<Registered> = Vec::new();
        for (graph_id, graph) in self.graphs {
            if !valid_graph_id(&graph_id) {
                return Err(BuildError::InvalidGraphId { graph_id });
            }
            if graphs.iter().any(|g| g.graph_id == graph_id) {
                return Err(BuildError::DuplicateGraph { graph_id });
            }
            if graph.checkpointer().is_none() {
                return Err(BuildError::NoCheckpointer { graph_id });
            }
            graphs.push(Registered {
                assistant_id: assistant_id(&graph_id).to_string(),
                graph_id,
                graph,
            });
        }
        let crate::store::Opened { store, queue } = self.store.unwrap_or_default().open()?;
        let inner = Arc::new_cyclic(|me| Inner {
            graphs,
            store,
            queue,
            auth: self.auth,
            lives: Lives::default(),
            started_at: crate::time::now_us(),
            admission: (0..ADMISSION_STRIPES)
                .map(|_| AsyncMutex::new(()))
                .collect(),
            worker: OnceLock::new(),
            sweeper: OnceLock::new(),
            expirer: OnceLock::new(),
            expire_every: self
                .expire_every
                .unwrap_or(Duration::from_secs(10))
                .max(Duration::from_millis(10)),
            me: me.clone(),
        });
        Ok(Server { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assistant_ids_match_the_reference_server() {
        assert_eq!(
            assistant_id("agent").to_string(),
            "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
        );
        assert_eq!(
            assistant_id("slow").to_string(),
            "cad1b5ad-d177-59d1-ab39-5e327188ed3a"
        );
    }

    #[test]
    fn graph_ids_are_checked() {
        assert!(valid_graph_id("agent"));
        assert!(valid_graph_id("my-flow_2.v1"));
        assert!(!valid_graph_id(""));
        assert!(!valid_graph_id("a/b"));
        assert!(!valid_graph_id("fe096781-5601-53d2-b2f6-0d3403f7e9ca"));
    }
}
