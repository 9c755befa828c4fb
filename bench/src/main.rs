//! hitl's side of the benchmark: the scenarios of `bench/SCENARIOS.md`, one JSON
//! object per run on stdout.
//!
//! Run with `cargo run --release -p hitl-bench -- cycle --backend memory --n 1000`
//! (see `--help`), or `bench/compare.sh` to compare with LangGraph.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hitl_runtime::agent::{
    Agent, ChatModel, HumanInTheLoop, ModelError, ModelRequest, create_agent,
};
use hitl_runtime::checkpoint::{ListFilter, PgDurability, SqliteDurability};
use hitl_runtime::message::AssistantMessage;
use hitl_runtime::{
    Checkpointer, Command, InMemorySaver, Message, PostgresSaver, RunConfig, SqliteSaver, ToolCall,
    ToolError, tool, tools,
};
use serde_json::{Value, json};

/// Send an email.
#[tool(interrupt)]
async fn send_email(to: String, body: String) -> Result<String, ToolError> {
    let _ = body;
    Ok(format!("sent to {to}"))
}

/// Read data.
#[tool]
async fn read_data(query: String) -> Result<String, ToolError> {
    Ok(format!("data for {query}"))
}

/// The scenario's model: a pure function of the conversation.
struct BenchModel;

#[async_trait::async_trait]
impl ChatModel for BenchModel {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        let last_is_user = matches!(request.messages.last(), Some(Message::User(_)));
        Ok(if last_is_user {
            AssistantMessage {
                tool_calls: vec![
                    ToolCall::new(
                        "send_email",
                        json!({"to": "alice@example.com", "body": "The quarterly numbers are ready."}),
                        "call_email",
                    ),
                    ToolCall::new(
                        "read_data",
                        json!({"query": "quarterly numbers"}),
                        "call_data",
                    ),
                ],
                ..Default::default()
            }
        } else {
            AssistantMessage {
                content: "Done: the email is sent and the data is read.".into(),
                ..Default::default()
            }
        })
    }
}

fn agent(saver: Arc<dyn Checkpointer>) -> Agent {
    create_agent(BenchModel)
        .tools(tools![send_email, read_data])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer_arc(saver)
        .build()
        .expect("a valid agent")
}

const USER: &str = "Send the quarterly numbers to Alice.";

fn approve() -> Command<hitl_runtime::AgentState> {
    Command::resume(json!({"decisions": [{"type": "approve"}]}))
}

/// One HITL cycle; returns (time to the interrupt, time of the resume).
async fn cycle(agent: &Agent, cfg: &RunConfig) -> (Duration, Duration) {
    let t0 = Instant::now();
    {
        // Scoped: a caller that keeps the paused run's output keeps its state alive,
        // and the resume then copies the state instead of updating it in place.
        let out = agent
            .invoke(Message::user(USER), cfg)
            .await
            .expect("invoke");
        assert!(
            out.is_interrupted() && out.interrupts.len() == 1,
            "the run pauses for review"
        );
    }
    let t1 = Instant::now();
    let out = agent.invoke(approve(), cfg).await.expect("resume");
    assert!(out.is_done(), "the run finishes after the approval");
    debug_assert_eq!(
        out.values.messages.last().map(Message::text).as_deref(),
        Some("Done: the email is sent and the data is read.")
    );
    (t1 - t0, t1.elapsed())
}

/// One cycle on a throwaway thread (one per process: workers share a schema), so that
/// one-time work (compiling schemas, preparing statements) is not timed.
async fn warm_up(agent: &Agent, saver: &dyn Checkpointer) {
    let thread = format!("warmup-{}", std::process::id());
    cycle(agent, &RunConfig::thread(thread.as_str())).await;
    saver
        .delete_thread(&thread)
        .await
        .expect("delete the warm-up thread");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "hitl's side of the benchmark (bench/SCENARIOS.md)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Args)]
struct Storage {
    /// Where threads are stored.
    #[arg(long, value_enum, default_value = "memory")]
    backend: Backend,
    /// The SQLite file (a temporary one by default).
    #[arg(long)]
    sqlite_path: Option<PathBuf>,
    /// The Postgres database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Postgres durability: `run-end` (writes reach the disk before each run
    /// returns) or `every-write`.
    #[arg(long, default_value = "run-end")]
    pg_durability: String,
    /// SQLite durability: `run-end` (writes reach the disk before each run returns),
    /// `normal` (survives a crash of the process, not a power loss) or `full` (every
    /// commit waits for the disk).
    #[arg(long, default_value = "run-end")]
    sqlite_durability: String,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Fresh threads, one HITL cycle each.
    Cycle {
        #[command(flatten)]
        storage: Storage,
        #[arg(long, default_value_t = 1000)]
        n: usize,
    },
    /// One thread, many cycles in a row.
    Long {
        #[command(flatten)]
        storage: Storage,
        #[arg(long, default_value_t = 200)]
        cycles: usize,
    },
    /// Many threads paused, then all resumed concurrently (in memory).
    Paused {
        #[arg(long, default_value_t = 10_000)]
        threads: usize,
    },
    /// Postgres: threads paused, then resumed by 1 or more worker processes.
    Workers {
        #[command(flatten)]
        storage: Storage,
        #[arg(long, default_value_t = 2000)]
        threads: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// One worker process of the `workers` scenario (internal).
    #[command(hide = true)]
    WorkerChild {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        schema: String,
        #[arg(long)]
        from: usize,
        #[arg(long)]
        to: usize,
    },
    /// The smallest configuration of every scenario, for CI.
    Smoke,
}

impl Storage {
    /// A non-default durability, named for the report (`None` for the defaults).
    fn variant(&self) -> Option<String> {
        match self.backend {
            Backend::Sqlite if self.sqlite_durability != "run-end" => {
                Some(format!("durability {}", self.sqlite_durability))
            }
            Backend::Postgres if self.pg_durability != "run-end" => {
                Some(format!("durability {}", self.pg_durability))
            }
            _ => None,
        }
    }
}

/// A saver, and how to measure what it stores.
struct Store {
    saver: Arc<dyn Checkpointer>,
    memory: Option<InMemorySaver>,
    sqlite: Option<PathBuf>,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn durability(s: &str) -> PgDurability {
    match s {
        "every-write" => PgDurability::EveryWrite,
        _ => PgDurability::RunEnd,
    }
}

async fn store(storage: &Storage, schema: Option<String>) -> Store {
    match storage.backend {
        Backend::Memory => {
            let saver = InMemorySaver::new();
            Store {
                saver: Arc::new(saver.clone()),
                memory: Some(saver),
                sqlite: None,
                pg: None,
                _dir: None,
            }
        }
        Backend::Sqlite => {
            let (path, dir) = match &storage.sqlite_path {
                Some(p) => {
                    let _ = std::fs::remove_file(p);
                    (p.clone(), None)
                }
                None => {
                    let dir = tempfile::tempdir().expect("a temporary directory");
                    (dir.path().join("bench.db"), Some(dir))
                }
            };
            Store {
                saver: Arc::new(
                    SqliteSaver::open_with(
                        &path,
                        match storage.sqlite_durability.as_str() {
                            "full" => SqliteDurability::Full,
                            "normal" => SqliteDurability::Normal,
                            _ => SqliteDurability::RunEnd,
                        },
                    )
                    .expect("sqlite"),
                ),
                memory: None,
                sqlite: Some(path),
                pg: None,
                _dir: dir,
            }
        }
        Backend::Postgres => {
            let schema = schema.unwrap_or_else(|| format!("hitl_bench_{}", std::process::id()));
            let saver = PostgresSaver::builder(storage.pg_url.as_str())
                .schema(schema.as_str())
                .durability(durability(&storage.pg_durability))
                .connect()
                .await
                .expect("postgres");
            Store {
                saver: Arc::new(saver),
                memory: None,
                sqlite: None,
                pg: Some((storage.pg_url.clone(), schema)),
                _dir: None,
            }
        }
    }
}

impl Store {
    /// Bytes stored for a thread (`None`: every thread).
    async fn bytes(&self, thread: Option<&str>) -> u64 {
        if let Some(m) = &self.memory {
            return match thread {
                Some(t) => m.stored_bytes(t).total() as u64,
                None => unreachable!("the memory saver is measured per thread"),
            };
        }
        let filter = thread.map_or(String::new(), |t| format!(" WHERE thread = '{t}'"));
        if let Some(path) = &self.sqlite {
            let conn = rusqlite::Connection::open(path).expect("sqlite");
            let q = format!(
                "SELECT (SELECT COALESCE(sum(length(record)), 0) FROM hitl_checkpoints{filter})
                      + (SELECT COALESCE(sum(length(data)), 0) FROM hitl_blobs{filter})
                      + (SELECT COALESCE(sum(length(value)), 0) FROM hitl_writes{filter})"
            );
            return conn.query_row(&q, [], |r| r.get::<_, i64>(0)).expect("sum") as u64;
        }
        let (url, schema) = self.pg.as_ref().expect("a backend");
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("postgres");
        tokio::spawn(conn);
        let q = format!(
            "SELECT ((SELECT COALESCE(sum(octet_length(record)), 0) FROM \"{schema}\".hitl_checkpoints{filter})
                   + (SELECT COALESCE(sum(octet_length(data)), 0) FROM \"{schema}\".hitl_blobs{filter})
                   + (SELECT COALESCE(sum(octet_length(value)), 0) FROM \"{schema}\".hitl_writes{filter}))::bigint"
        );
        client
            .query_one(&q, &[])
            .await
            .expect("sum")
            .get::<_, i64>(0) as u64
    }

    async fn drop_schema(&self) {
        if let Some((url, schema)) = &self.pg {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("postgres");
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .expect("drop");
        }
    }
}

/// Resident memory (`VmRSS`) and its peak (`VmHWM`), in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i]
}

async fn run_cycle(storage: &Storage, n: usize) -> Value {
    let store = store(storage, None).await;
    let agent = agent(store.saver.clone());
    warm_up(&agent, &*store.saver).await;
    let (rss_before, _) = rss();
    let mut totals = Vec::with_capacity(n);
    let mut interrupts = Vec::with_capacity(n);
    let mut resumes = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let cfg = RunConfig::thread(format!("t{i}"));
        let (a, b) = cycle(&agent, &cfg).await;
        interrupts.push(ms(a));
        resumes.push(ms(b));
        totals.push(ms(a + b));
    }
    let elapsed = start.elapsed();
    let (rss_after, peak) = rss();
    let checkpoints = store
        .saver
        .list("t0", "", &ListFilter::default())
        .await
        .expect("list")
        .len();
    let stored = if store.memory.is_some() {
        let mut sum = 0;
        for i in 0..n {
            sum += store.bytes(Some(&format!("t{i}"))).await;
        }
        sum
    } else {
        store.bytes(None).await
    };
    store.drop_schema().await;
    json!({
        "system": "hitl", "scenario": "cycle", "backend": storage.backend.name(), "n": n,
        "cycles_per_s": n as f64 / elapsed.as_secs_f64(),
        "cycle_ms": {"median": percentile(&mut totals, 0.5), "p99": percentile(&mut totals, 0.99)},
        "interrupt_ms": {"median": percentile(&mut interrupts, 0.5)},
        "resume_ms": {"median": percentile(&mut resumes, 0.5)},
        "checkpoints_per_thread": checkpoints,
        "stored_bytes_per_thread": stored as f64 / n as f64,
        "rss_per_thread_bytes": rss_after.saturating_sub(rss_before) as f64 / n as f64,
        "peak_rss_bytes": peak,
        "variant": storage.variant(),
    })
}

async fn run_long(storage: &Storage, cycles: usize) -> Value {
    let store = store(storage, None).await;
    let agent = agent(store.saver.clone());
    warm_up(&agent, &*store.saver).await;
    // Two threads: one timed, one measured after every cycle (measuring reads the
    // stored data, which would disturb the timing of the next cycle).
    let timed = RunConfig::thread("long");
    let mut per_cycle = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let (a, b) = cycle(&agent, &timed).await;
        per_cycle.push(ms(a + b));
    }
    let measured = RunConfig::thread("long-bytes");
    let mut added = Vec::with_capacity(cycles);
    let mut before = 0;
    for _ in 0..cycles {
        cycle(&agent, &measured).await;
        let now = store.bytes(Some("long-bytes")).await;
        added.push(now - before);
        before = now;
    }
    store.drop_schema().await;
    json!({
        "system": "hitl", "scenario": "long", "backend": storage.backend.name(), "cycles": cycles,
        "per_cycle_ms": per_cycle, "bytes_added": added, "total_bytes": before,
    })
}

async fn run_paused(threads: usize) -> Value {
    let saver = Arc::new(InMemorySaver::new());
    let agent = agent(saver.clone());
    warm_up(&agent, &*saver).await;
    let (rss_before, _) = rss();
    for i in 0..threads {
        let out = agent
            .invoke(Message::user(USER), &RunConfig::thread(format!("p{i}")))
            .await
            .expect("invoke");
        assert!(out.is_interrupted());
    }
    let (rss_paused, _) = rss();
    let start = Instant::now();
    let tasks: Vec<_> = (0..threads)
        .map(|i| {
            let agent = agent.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let out = agent
                    .invoke(approve(), &RunConfig::thread(format!("p{i}")))
                    .await
                    .expect("resume");
                assert!(out.is_done());
                ms(t.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(threads);
    for t in tasks {
        latencies.push(t.await.expect("the resume task"));
    }
    let elapsed = start.elapsed();
    json!({
        "system": "hitl", "scenario": "paused", "backend": "memory", "threads": threads,
        "rss_per_paused_thread_bytes": rss_paused.saturating_sub(rss_before) as f64 / threads as f64,
        "resume_per_s": threads as f64 / elapsed.as_secs_f64(),
        "resume_ms": {"median": percentile(&mut latencies, 0.5), "p99": percentile(&mut latencies, 0.99)},
    })
}

async fn run_workers(storage: &Storage, threads: usize, workers: usize) -> Value {
    let schema = format!("hitl_bench_w_{}", std::process::id());
    let store = store(storage, Some(schema.clone())).await;
    let agent = agent(store.saver.clone());
    warm_up(&agent, &*store.saver).await;
    for i in 0..threads {
        let out = agent
            .invoke(Message::user(USER), &RunConfig::thread(format!("w{i}")))
            .await
            .expect("invoke");
        assert!(out.is_interrupted());
    }
    let exe = std::env::current_exe().expect("the benchmark binary");
    let start = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|w| {
            let (from, to) = (threads * w / workers, threads * (w + 1) / workers);
            std::process::Command::new(&exe)
                .args([
                    "worker-child",
                    "--backend",
                    "postgres",
                    "--pg-url",
                    &storage.pg_url,
                ])
                .args([
                    "--pg-durability",
                    &storage.pg_durability,
                    "--schema",
                    &schema,
                ])
                .args(["--from", &from.to_string(), "--to", &to.to_string()])
                .spawn()
                .expect("a worker process")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("the worker").success(), "a worker failed");
    }
    let elapsed = start.elapsed();
    store.drop_schema().await;
    json!({
        "system": "hitl", "scenario": "workers", "backend": "postgres",
        "threads": threads, "workers": workers, "resume_per_s": threads as f64 / elapsed.as_secs_f64(),
    })
}

async fn worker_child(storage: &Storage, schema: String, from: usize, to: usize) {
    let store = store(storage, Some(schema)).await;
    let agent = agent(store.saver.clone());
    warm_up(&agent, &*store.saver).await;
    for i in from..to {
        let out = agent
            .invoke(approve(), &RunConfig::thread(format!("w{i}")))
            .await
            .expect("resume");
        assert!(out.is_done());
    }
}

fn print(v: &Value) {
    println!("{v}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    match Cli::parse().scenario {
        Scenario::Cycle { storage, n } => print(&run_cycle(&storage, n).await),
        Scenario::Long { storage, cycles } => print(&run_long(&storage, cycles).await),
        Scenario::Paused { threads } => print(&run_paused(threads).await),
        Scenario::Workers {
            storage,
            threads,
            workers,
        } => print(&run_workers(&storage, threads, workers).await),
        Scenario::WorkerChild {
            storage,
            schema,
            from,
            to,
        } => worker_child(&storage, schema, from, to).await,
        Scenario::Smoke => {
            let storage = |backend| Storage {
                backend,
                sqlite_path: None,
                pg_url: std::env::var("HITL_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
                pg_durability: "run-end".into(),
                sqlite_durability: "run-end".into(),
            };
            print(&run_cycle(&storage(Backend::Memory), 3).await);
            print(&run_cycle(&storage(Backend::Sqlite), 3).await);
            print(&run_long(&storage(Backend::Memory), 3).await);
            print(&run_paused(10).await);
            if std::env::var("HITL_TEST_POSTGRES_URL").is_ok() {
                print(&run_cycle(&storage(Backend::Postgres), 3).await);
                print(&run_workers(&storage(Backend::Postgres), 4, 2).await);
            }
        }
    }
}
