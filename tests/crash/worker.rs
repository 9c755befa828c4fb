//! The crash test's worker: drives every thread of the workload to the end, resuming
//! whatever a previous (killed) worker left. The test kills it with SIGKILL at random
//! moments and starts it again until it finishes.
//!
//! Usage: `hitl-crash-worker sqlite <db file> <threads> <seed>` or
//! `hitl-crash-worker postgres <url> <schema> <threads> <seed>`.
//!
//! The server crash test runs it as `hitl-crash-worker serve <url> <schema> <seed>`:
//! the workload's agent behind hitl-server on Postgres (records, queue and run leases
//! in `<schema>`), on a free port it prints on the first line of stdout.
//!
//! The lease race test also runs it as `hitl-crash-worker continue sqlite <db file>
//! <dir> <thread>` or `... continue postgres <url> <schema> <dir> <thread>`: one
//! `invoke(None)` of the race agent on that thread, printing `busy`, `done`, `paused`
//! or `error: ..`.

mod policy;
#[path = "workload.rs"]
#[allow(dead_code)] // The test uses the rest.
mod workload;

use std::sync::Arc;

use async_trait::async_trait;
use hitl_runtime::{Checkpointer, Command, Message, RunConfig, RunError};
use workload::{Side, SideStore};

struct SqliteSide(std::sync::Mutex<rusqlite::Connection>);

#[async_trait]
impl SideStore for SqliteSide {
    async fn attempt(&self, key: &str, tool: &str, completed_before: bool) {
        self.0
            .lock()
            .unwrap()
            .execute(
                "INSERT INTO side_attempts (key, tool, completed_before) VALUES (?1, ?2, ?3)",
                rusqlite::params![key, tool, completed_before],
            )
            .unwrap();
    }

    async fn apply(&self, key: &str, tool: &str) -> bool {
        let n = self
            .0
            .lock()
            .unwrap()
            .execute(
                "INSERT OR IGNORE INTO side_effects (key, tool, applied) VALUES (?1, ?2, 1)",
                rusqlite::params![key, tool],
            )
            .unwrap();
        n == 1
    }
}

struct PgSide(tokio_postgres::Client, String);

#[async_trait]
impl SideStore for PgSide {
    async fn attempt(&self, key: &str, tool: &str, completed_before: bool) {
        self.0
            .execute(
                &format!("INSERT INTO \"{}\".side_attempts (key, tool, completed_before) VALUES ($1, $2, $3)", self.1),
                &[&key, &tool, &completed_before],
            )
            .await
            .unwrap();
    }

    async fn apply(&self, key: &str, tool: &str) -> bool {
        let n = self
            .0
            .execute(
                &format!(
                    "INSERT INTO \"{}\".side_effects (key, tool, applied) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
                    self.1
                ),
                &[&key, &tool],
            )
            .await
            .unwrap();
        n == 1
    }
}

async fn drive(saver: Arc<dyn Checkpointer>, store: Arc<dyn SideStore>, threads: usize, seed: u64) {
    let agent = workload::agent(saver.clone());
    let side = Side { store, saver, seed };
    loop {
        let mut all_done = true;
        for i in 0..threads {
            let cfg = RunConfig::thread(workload::thread_name(i)).context(side.clone());
            let state = match agent.get_state(&cfg).await {
                Ok(s) => Some(s),
                Err(RunError::UnknownThread { .. }) => None,
                Err(e) => panic!("get_state: {e}"),
            };
            let result = match state {
                None => agent.invoke(Message::user("check out"), &cfg).await,
                Some(s) if s.next.is_empty() => continue,
                Some(s) if !s.interrupts.is_empty() => {
                    let reviewer = workload::reviewer(i);
                    let answers: Vec<_> = s
                        .interrupts
                        .iter()
                        .map(|p| (p.id, reviewer.answer(p).expect("a scripted decision")))
                        .collect();
                    agent.invoke(Command::resume_by_id(answers), &cfg).await
                }
                Some(_) => agent.invoke(None, &cfg).await,
            };
            match result {
                Ok(out) if out.is_done() => {}
                Ok(_) => all_done = false,
                // The killed worker's lease has not expired yet: come back to it.
                Err(RunError::ThreadBusy { .. }) => {
                    all_done = false;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("thread {i}: {e}"),
            }
        }
        if all_done {
            return;
        }
    }
}

/// One `invoke(None)` of the race agent; prints what happened.
async fn continue_once(saver: Arc<dyn Checkpointer>, dir: &str, thread: &str) {
    let agent = workload::race_agent(saver);
    let cfg = RunConfig::thread(thread).context(workload::RaceDir(dir.into()));
    match agent.invoke(None, &cfg).await {
        Err(RunError::ThreadBusy { .. }) => println!("busy"),
        Ok(out) if out.is_done() => println!("done"),
        Ok(_) => println!("paused"),
        Err(e) => println!("error: {e}"),
    }
}

/// The Postgres side tables, created if missing.
async fn pg_side(url: &str, schema: &str) -> PgSide {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".side_attempts (key TEXT NOT NULL, tool TEXT NOT NULL, completed_before BOOLEAN NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{schema}\".side_effects (key TEXT PRIMARY KEY, tool TEXT NOT NULL, applied INTEGER NOT NULL);"
        ))
        .await
        .unwrap();
    PgSide(client, schema.to_owned())
}

/// Serves the workload's agent over HTTP until killed.
async fn serve(url: &str, schema: &str, seed: u64) {
    let saver: Arc<dyn Checkpointer> = Arc::new(
        hitl_runtime::PostgresSaver::builder(url)
            .schema(schema)
            .connect()
            .await
            .unwrap(),
    );
    let side = Side {
        store: Arc::new(pg_side(url, schema).await),
        saver: saver.clone(),
        seed,
    };
    assert!(workload::SIDE.set(side).is_ok());
    let store = hitl_server::Store::postgres(url)
        .schema(schema)
        // Longer than the agent's run lease (600 ms), so a run taken over finds its
        // thread free.
        .lease(std::time::Duration::from_millis(1200))
        .connect()
        .await
        .unwrap();
    let server = hitl_server::Server::builder()
        .graph("agent", workload::agent(saver))
        .store(store)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    server.serve(listener).await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("continue") {
        match args.get(1).map(String::as_str) {
            Some("sqlite") => {
                let saver = hitl_runtime::SqliteSaver::open(&args[2]).await.unwrap();
                continue_once(Arc::new(saver), &args[3], &args[4]).await;
            }
            Some("postgres") => {
                let saver = hitl_runtime::PostgresSaver::builder(args[2].as_str())
                    .schema(args[3].as_str())
                    .connect()
                    .await
                    .unwrap();
                continue_once(Arc::new(saver), &args[4], &args[5]).await;
            }
            _ => {
                eprintln!(
                    "usage: hitl-crash-worker continue sqlite <db> <dir> <thread> | continue postgres <url> <schema> <dir> <thread>"
                );
                std::process::exit(2);
            }
        }
        return;
    }
    if args.first().map(String::as_str) == Some("policy") {
        return policy::run(&args[1], &args[2], &args[3], &args[4]).await;
    }
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1], &args[2], args[3].parse().unwrap()).await;
    }
    match args.first().map(String::as_str) {
        Some("sqlite") => {
            let path = &args[1];
            let threads: usize = args[2].parse().unwrap();
            let seed: u64 = args[3].parse().unwrap();
            let saver = hitl_runtime::SqliteSaver::open(path).await.unwrap();
            let side = rusqlite::Connection::open(path).unwrap();
            side.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            side.execute_batch(
                "CREATE TABLE IF NOT EXISTS side_attempts (key TEXT NOT NULL, tool TEXT NOT NULL, completed_before INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS side_effects (key TEXT PRIMARY KEY, tool TEXT NOT NULL, applied INTEGER NOT NULL DEFAULT 0);",
            )
            .unwrap();
            drive(
                Arc::new(saver),
                Arc::new(SqliteSide(std::sync::Mutex::new(side))),
                threads,
                seed,
            )
            .await;
        }
        Some("postgres") => {
            let (url, schema) = (&args[1], &args[2]);
            let threads: usize = args[3].parse().unwrap();
            let seed: u64 = args[4].parse().unwrap();
            let saver = hitl_runtime::PostgresSaver::builder(url.as_str())
                .schema(schema.as_str())
                .connect()
                .await
                .unwrap();
            drive(
                Arc::new(saver),
                Arc::new(pg_side(url, schema).await),
                threads,
                seed,
            )
            .await;
        }
        _ => {
            eprintln!(
                "usage: hitl-crash-worker sqlite <db> <threads> <seed> | postgres <url> <schema> <threads> <seed>"
            );
            std::process::exit(2);
        }
    }
}
