//! Several hitl-server processes on one Postgres database, one of them SIGKILLed at
//! random moments and started again, while clients drive every thread through the
//! HTTP API (start, review, resume) against whichever process is up.
//!
//! From the database alone it then checks what the crash test of the savers checks:
//! every thread finished, no approved call was lost, no rejected call ran, no call ran
//! again after its result was stored, and every effect applied once (idempotency
//! keys); and that every run the clients created ended in `success`: a run whose
//! process died was continued by another process once its lease ran out.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash::workload;
use crate::pg::{PgSchemas, url};

/// The server processes and the ports they listen on.
struct Fleet {
    schema: String,
    procs: Mutex<Vec<(Child, u16)>>,
}

impl Fleet {
    fn start(schema: &str, n: usize) -> Fleet {
        let fleet = Fleet {
            schema: schema.to_owned(),
            procs: Mutex::new(Vec::new()),
        };
        for _ in 0..n {
            let p = fleet.spawn();
            fleet.procs.lock().unwrap().push(p);
        }
        fleet
    }

    fn spawn(&self) -> (Child, u16) {
        let mut child = Process::new(env!("CARGO_BIN_EXE_hitl-crash-worker"))
            .args(["serve", &url(), &self.schema, "5"])
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("HITL_SERVER_CRASH_LOG") {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                None => Stdio::null(),
            })
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        (child, port)
    }

    fn ports(&self) -> Vec<u16> {
        self.procs.lock().unwrap().iter().map(|(_, p)| *p).collect()
    }

    /// SIGKILLs process `k` and starts a new one in its place.
    fn kill_and_restart(&self, k: usize) {
        let old = {
            let mut procs = self.procs.lock().unwrap();
            let (child, _) = &mut procs[k];
            child.kill().unwrap();
            child.wait().unwrap();
            procs[k].1
        };
        let fresh = self.spawn();
        let mut procs = self.procs.lock().unwrap();
        assert_eq!(procs[k].1, old);
        procs[k] = fresh;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (child, _) in self.procs.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Thread `i`'s id (the API takes UUIDs).
fn thread_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A client that retries on whichever server is up.
struct Client {
    http: reqwest::Client,
    fleet: Arc<Fleet>,
}

impl Client {
    /// Sends a request to a live server; connection failures (a killed server) are
    /// retried on another. Returns the status and the JSON body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut attempt = 0usize;
        loop {
            if let Some(answer) = self.call_once(attempt, method.clone(), path, body).await {
                return answer;
            }
            attempt += 1;
            assert!(attempt < 2000, "no server answered {path}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One attempt on one server: `None` if it died before answering (the request may
    /// or may not have taken effect).
    async fn call_once(
        &self,
        attempt: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let ports = self.fleet.ports();
        let port = ports[attempt % ports.len()];
        let mut req = self
            .http
            .request(method, format!("http://127.0.0.1:{port}{path}"));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.ok()?;
        Some((status, body))
    }

    /// The run of `thread` tagged `step`, if one was created (a request whose answer
    /// was lost may have created it).
    async fn run_tagged(&self, thread: &str, step: &str) -> Option<Value> {
        let (status, runs) = self
            .call(
                reqwest::Method::GET,
                &format!("/threads/{thread}/runs?limit=100"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{runs}");
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["metadata"]["step"] == step)
            .cloned()
    }

    /// Creates the run tagged `step` once, and waits for it to end. Returns its final
    /// status.
    async fn run_once(&self, thread: &str, step: &str, body: Value) -> String {
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds % 50 == 0 {
                let (_, t) = self
                    .call(reqwest::Method::GET, &format!("/threads/{thread}"), None)
                    .await;
                let (_, runs) = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/threads/{thread}/runs"),
                        None,
                    )
                    .await;
                let runs: Vec<(Value, Value)> = runs
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r["status"].clone(), r["metadata"]["step"].clone()))
                    .collect();
                eprintln!(
                    "{thread} {step}: still trying after {rounds} rounds; thread status {}, runs {runs:?}",
                    t["status"]
                );
            }
            let run = match self.run_tagged(thread, step).await {
                Some(run) => run,
                None => {
                    // Not retried blindly: a server that died may have recorded it.
                    let Some((status, run)) = self
                        .call_once(
                            rounds,
                            reqwest::Method::POST,
                            &format!("/threads/{thread}/runs"),
                            Some(&body),
                        )
                        .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    match status {
                        200 => run,
                        // Busy with a run being taken over: try again later.
                        409 => {
                            if rounds % 50 == 49 {
                                eprintln!("{thread} {step}: 409 {run}");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        other => panic!("{thread} {step}: {other} {run}"),
                    }
                }
            };
            let run_id = run["run_id"].as_str().unwrap();
            let path = format!("/threads/{thread}/runs/{run_id}/join");
            let (status, _) = self.call(reqwest::Method::GET, &path, None).await;
            if status != 200 {
                continue;
            }
            let (_, run) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/threads/{thread}/runs/{run_id}"),
                    None,
                )
                .await;
            let status = run["status"].as_str().unwrap().to_owned();
            if status == "pending" || status == "running" {
                // The join's server died before the run ended.
                continue;
            }
            return status;
        }
    }

    /// Drives thread `i` to its end: start, then answer the review.
    async fn drive(&self, i: usize) -> Vec<String> {
        let thread = thread_id(i);
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/threads",
                Some(&json!({"thread_id": thread, "if_exists": "do_nothing"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let start = json!({
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": "check out"}]},
            "metadata": {"step": "start"},
        });
        let first = self.run_once(&thread, "start", start).await;
        let charge = if workload::charge_approved(i) {
            json!({"type": "approve"})
        } else {
            json!({"type": "reject", "message": "over budget"})
        };
        let resume = json!({
            "assistant_id": "agent",
            "command": {"resume": {"decisions": [{"type": "approve"}, charge]}},
            "metadata": {"step": "resume"},
        });
        let second = self.run_once(&thread, "resume", resume).await;
        vec![first, second]
    }
}

#[test]
fn three_servers_on_postgres_survive_sigkill_and_lose_no_run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let schemas = PgSchemas::new();
    let schema = schemas.name();
    let knob = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let threads = knob("HITL_SERVER_CRASH_THREADS", 300);
    let max_kills = knob("HITL_SERVER_CRASH_KILLS", 12);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fleet = Arc::new(Fleet::start(&schema, 3));
    let started = Instant::now();
    let (statuses, kills) = rt.block_on(async {
        let client = Arc::new(Client {
            http: reqwest::Client::new(),
            fleet: fleet.clone(),
        });
        let killer = {
            let fleet = fleet.clone();
            tokio::task::spawn_blocking(move || {
                let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
                let mut kills = 0;
                while kills < max_kills {
                    std::thread::sleep(
                        Duration::from_millis(250) + workload::jitter(&mut seed, 700),
                    );
                    let k = (seed % 3) as usize;
                    fleet.kill_and_restart(k);
                    kills += 1;
                }
                kills
            })
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(40));
        let mut tasks = Vec::new();
        for i in 0..threads {
            let client = client.clone();
            let limit = limit.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                (i, client.drive(i).await)
            }));
        }
        let mut statuses = HashMap::new();
        for t in tasks {
            let (i, s) = tokio::time::timeout(Duration::from_secs(600), t)
                .await
                .expect("every thread finishes")
                .unwrap();
            statuses.insert(i, s);
        }
        (statuses, killer.await.unwrap())
    });
    for (i, s) in &statuses {
        assert_eq!(
            s,
            &["success", "success"],
            "thread {i}: every run succeeded"
        );
    }
    drop(fleet);

    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let side = crate::crash::pg_side(&client, &schema).await;
        let succeeded: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{schema}\".hitl_server_runs WHERE status = 'success'"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(succeeded, threads as i64 * 2, "every run is recorded, once");
        let saver = schemas.saver(&schema).await;
        let stats = crate::crash::Stats {
            kills,
            starts: 3 + kills,
        };
        let names: Vec<String> = (0..threads).map(thread_id).collect();
        crate::crash::check_threads(
            Arc::new(saver),
            side,
            &names,
            &stats,
            &format!(
                "3 servers on Postgres, {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        )
        .await;
    });
}
