//! The crash test's worker: drives every thread of the workload to the end, resuming
//! whatever a previous (killed) worker left. The test kills it with SIGKILL at random
//! moments and starts it again until it finishes.
//!
//! Usage: `hitl-crash-worker sqlite <db file> <threads> <seed>` or
//! `hitl-crash-worker postgres <url> <schema> <threads> <seed>`.

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
                Err(e) => panic!("thread {i}: {e}"),
            }
        }
        if all_done {
            return;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{schema}\".side_attempts (key TEXT NOT NULL, tool TEXT NOT NULL, completed_before BOOLEAN NOT NULL);
                     CREATE TABLE IF NOT EXISTS \"{schema}\".side_effects (key TEXT PRIMARY KEY, tool TEXT NOT NULL, applied INTEGER NOT NULL);"
                ))
                .await
                .unwrap();
            drive(
                Arc::new(saver),
                Arc::new(PgSide(client, schema.clone())),
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
