//! Crash and race tests for the durable savers.
//!
//! The crash test runs `hitl-crash-worker` (tests/crash/worker.rs) on many paused
//! threads, kills it with SIGKILL at random moments, starts it again, and repeats
//! until every thread is done. Then it checks, from the database alone, that:
//! every thread finished; no approved call was lost; no rejected call ever ran; no
//! call ran again after its result was stored; a call ran twice only if it was killed
//! before its result was stored (at-least-once), and its effect still applied once.

#[path = "../crash/workload.rs"]
#[allow(dead_code)]
pub(crate) mod workload;

use std::collections::HashMap;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hitl_runtime::agent::HumanInTheLoop;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Checkpointer, Command, Message, ResumeError, RunConfig, RunError, ToolCall, tools,
};
use serde_json::json;

use crate::agent::{Ran, send_email};
use crate::pg::{PgSchemas, url};

pub(crate) struct Stats {
    pub(crate) kills: usize,
    pub(crate) starts: usize,
}

/// Runs the worker, killing it at random moments, until it finishes on its own.
fn run_with_kills(args: &[String], max_kills: usize, budget: Duration) -> Stats {
    let deadline = Instant::now() + budget;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    let mut stats = Stats {
        kills: 0,
        starts: 0,
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "the workload did not finish in {budget:?}"
        );
        let mut child = Process::new(env!("CARGO_BIN_EXE_hitl-crash-worker"))
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("the worker starts");
        stats.starts += 1;
        let kill_after = if stats.kills < max_kills {
            Some(Duration::from_millis(15) + workload::jitter(&mut seed, 120))
        } else {
            None
        };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "the worker failed: {status}");
                return stats;
            }
            if kill_after.is_some_and(|k| started.elapsed() >= k) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                stats.kills += 1;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not finish in {budget:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// What the side tables hold: per key, the attempts and whether its effect applied.
pub(crate) struct Side {
    pub(crate) attempts: HashMap<String, (String, usize, usize)>,
    pub(crate) effects: HashMap<String, (String, i64)>,
}

/// What the Postgres side tables of schema `schema` hold.
pub(crate) async fn pg_side(client: &tokio_postgres::Client, schema: &str) -> Side {
    let mut attempts = HashMap::new();
    for row in client
        .query(
            &format!(
                "SELECT key, tool, count(*), count(*) FILTER (WHERE completed_before) FROM \"{schema}\".side_attempts GROUP BY key, tool"
            ),
            &[],
        )
        .await
        .unwrap()
    {
        attempts.insert(
            row.get::<_, String>(0),
            (
                row.get::<_, String>(1),
                row.get::<_, i64>(2) as usize,
                row.get::<_, i64>(3) as usize,
            ),
        );
    }
    let mut effects = HashMap::new();
    for row in client
        .query(
            &format!("SELECT key, tool, applied FROM \"{schema}\".side_effects"),
            &[],
        )
        .await
        .unwrap()
    {
        effects.insert(
            row.get::<_, String>(0),
            (row.get::<_, String>(1), i64::from(row.get::<_, i32>(2))),
        );
    }
    Side { attempts, effects }
}

pub(crate) async fn check(
    saver: Arc<dyn Checkpointer>,
    side: Side,
    threads: usize,
    stats: &Stats,
    name: &str,
) {
    let names: Vec<String> = (0..threads).map(workload::thread_name).collect();
    check_threads(saver, side, &names, stats, name).await;
}

/// [`check`] for threads with these ids (thread `i` is the workload's thread `i`).
pub(crate) async fn check_threads(
    saver: Arc<dyn Checkpointer>,
    side: Side,
    names: &[String],
    stats: &Stats,
    name: &str,
) {
    let threads = names.len();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let agent = workload::agent(saver);
    for (i, thread) in names.iter().enumerate() {
        let state = agent
            .get_state(&RunConfig::thread(thread.clone()))
            .await
            .unwrap();
        assert!(state.next.is_empty(), "thread {i} finished");
        assert_eq!(
            state.values.messages.last().unwrap().text(),
            "All done.",
            "thread {i}"
        );
    }
    let mut effects_by_call: HashMap<(String, String), usize> = HashMap::new();
    for (key, (tool, applied)) in &side.effects {
        assert_eq!(*applied, 1, "{key}: the effect applied once");
        let thread = key.split('/').next().unwrap().to_owned();
        *effects_by_call.entry((thread, tool.clone())).or_default() += 1;
    }
    for (i, thread) in names.iter().enumerate() {
        let thread = thread.clone();
        for tool in ["send_email", "charge", "log_event"] {
            let expected = usize::from(tool != "charge" || workload::charge_approved(i));
            let got = effects_by_call
                .get(&(thread.clone(), tool.to_owned()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                got, expected,
                "{thread} {tool}: effects (approved calls are never lost, rejected never run)"
            );
        }
    }
    let mut total = 0;
    let mut reruns = 0;
    let mut reruns_after_result = 0;
    for (key, (tool, attempts, after_result)) in &side.attempts {
        total += attempts;
        reruns += attempts - 1;
        reruns_after_result += after_result;
        let thread = index[key.split('/').next().unwrap()];
        assert!(
            tool != "charge" || workload::charge_approved(thread),
            "{key}: a rejected call ran"
        );
    }
    assert_eq!(
        reruns_after_result, 0,
        "no call ran again after its result was stored"
    );
    eprintln!(
        "crash test ({name}): {threads} threads, {} worker starts, {} kills (SIGKILL), \
         {total} tool attempts for {} calls, {reruns} re-runs (killed before their result was stored), \
         {reruns_after_result} re-runs after a stored result, 0 effects applied twice",
        stats.starts,
        stats.kills,
        side.attempts.len()
    );
}

#[test]
fn sqlite_survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let threads = 60;
    let args: Vec<String> = vec![
        "sqlite".into(),
        path.display().to_string(),
        threads.to_string(),
        "7".into(),
    ];
    let stats = run_with_kills(&args, 40, Duration::from_secs(300));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut attempts = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT key, tool, count(*), sum(completed_before) FROM side_attempts GROUP BY key, tool")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap()
    {
        let (key, tool, n, after) = row.unwrap();
        attempts.insert(key, (tool, n as usize, after as usize));
    }
    let mut effects = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT key, tool, applied FROM side_effects")
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
    {
        let (key, tool, applied) = row.unwrap();
        effects.insert(key, (tool, applied));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let saver = hitl_runtime::SqliteSaver::open(&path).await.unwrap();
        check(
            Arc::new(saver),
            Side { attempts, effects },
            threads,
            &stats,
            "SQLite",
        )
        .await;
    });
}

#[test]
#[cfg_attr(
    not(hitl_postgres),
    ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres crash test"
)]
fn postgres_survives_sigkill_at_random_moments() {
    let schemas = PgSchemas::new();
    let schema = schemas.name();
    let threads = 60;
    let args: Vec<String> = vec![
        "postgres".into(),
        url(),
        schema.clone(),
        threads.to_string(),
        "11".into(),
    ];
    let stats = run_with_kills(&args, 40, Duration::from_secs(300));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let side = pg_side(&client, &schema).await;
        let saver = schemas.saver(&schema).await;
        check(Arc::new(saver), side, threads, &stats, "Postgres").await;
    });
}

/// Two workers, each with its own connection, resume the same paused thread at the
/// same moment: exactly one wins, the other is told, and history does not fork.
async fn race(saver_a: Arc<dyn Checkpointer>, saver_b: Arc<dyn Checkpointer>, rounds: usize) {
    let agent = |saver: Arc<dyn Checkpointer>| {
        hitl_runtime::agent::create_agent(ScriptedModel::turns([
            Message::assistant_with_tools(
                "",
                vec![ToolCall::new(
                    "send_email",
                    json!({"to": "a", "body": "b"}),
                    "c1",
                )],
            ),
            Message::assistant("ok"),
        ]))
        .tools(tools![send_email])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer_arc(saver)
        .state_cache(0)
        .build()
        .unwrap()
    };
    let (a, b) = (agent(saver_a), agent(saver_b));
    for round in 0..rounds {
        let ran = Ran::default();
        let cfg = RunConfig::thread(format!("race-{round}")).context(ran.clone());
        a.invoke(Message::user("go"), &cfg).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let resume = |agent: hitl_runtime::agent::Agent,
                      barrier: Arc<tokio::sync::Barrier>,
                      cfg: RunConfig| {
            tokio::spawn(async move {
                barrier.wait().await;
                agent
                    .invoke(
                        Command::resume(json!({"decisions": [{"type": "approve"}]})),
                        &cfg,
                    )
                    .await
            })
        };
        let (ra, rb) = tokio::join!(
            resume(a.clone(), barrier.clone(), cfg.clone()),
            resume(b.clone(), barrier.clone(), cfg.clone())
        );
        let results = [ra.unwrap(), rb.unwrap()];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {results:?}"
        );
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        RunError::Checkpoint(_)
                            | RunError::ThreadBusy { .. }
                            | RunError::Resume(
                                ResumeError::NothingPending { .. }
                                    | ResumeError::AlreadyAnswered { .. }
                            )
                    ),
                    "round {round}: {e}"
                );
            }
        }
        assert_eq!(ran.list().len(), 1, "round {round}: the tool ran once");
        let history = a.get_state_history(&cfg).await.unwrap();
        for pair in history.windows(2) {
            assert_eq!(
                pair[0].parent_checkpoint_id,
                Some(pair[1].checkpoint_id),
                "round {round}: no fork"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_double_resume_from_two_connections_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let a = hitl_runtime::SqliteSaver::open(&path).await.unwrap();
    let b = hitl_runtime::SqliteSaver::open(&path).await.unwrap();
    race(Arc::new(a), Arc::new(b), 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(hitl_postgres),
    ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres race test"
)]
async fn postgres_double_resume_from_two_pools_has_one_winner() {
    let schemas = PgSchemas::new();
    let schema = schemas.name();
    let a = schemas.saver(&schema).await;
    let b = schemas.saver(&schema).await;
    race(Arc::new(a), Arc::new(b), 30).await;
}

/// While one runner resumes a thread and its approved tool runs, another process's
/// `invoke(None)` on the same thread is told the thread is busy: the tool runs once.
async fn lease_race(saver: Arc<dyn Checkpointer>, child_args: impl Fn(&str, &str) -> Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let agent = workload::race_agent(saver);
    let thread = "lease-race";
    let cfg = RunConfig::thread(thread).context(workload::RaceDir(dir.path().into()));
    let out = agent.invoke(Message::user("send it"), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    let resume = {
        let (agent, cfg) = (agent.clone(), cfg.clone());
        tokio::spawn(async move {
            agent
                .invoke(
                    Command::resume(json!({"decisions": [{"type": "approve"}]})),
                    &cfg,
                )
                .await
        })
    };
    let started = Instant::now();
    while !dir.path().join("started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tool never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = |args: Vec<String>| {
        let out = Process::new(env!("CARGO_BIN_EXE_hitl-crash-worker"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let args = child_args(&dir_arg, thread);
    let seen = tokio::task::spawn_blocking({
        let args = args.clone();
        move || other(args)
    })
    .await
    .unwrap();
    assert_eq!(seen, "busy", "the other process must not run the thread");
    std::fs::write(dir.path().join("release"), b"").unwrap();
    let out = resume.await.unwrap().unwrap();
    assert!(out.is_done());
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    assert_eq!(effects.lines().count(), 1, "{effects}");
    // Once the run is over, the other process may continue it (nothing left to do).
    let seen = tokio::task::spawn_blocking(move || other(args))
        .await
        .unwrap();
    assert_eq!(seen, "done");
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).unwrap();
    assert_eq!(effects.lines().count(), 1, "{effects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_second_process_cannot_run_a_running_thread() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("lease.db");
    let saver = hitl_runtime::SqliteSaver::open(&path).await.unwrap();
    let path = path.to_str().unwrap().to_owned();
    lease_race(Arc::new(saver), |dir, thread| {
        ["continue", "sqlite", &path, dir, thread]
            .map(String::from)
            .to_vec()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(hitl_postgres),
    ignore = "set HITL_TEST_POSTGRES_URL to run the Postgres lease race"
)]
async fn postgres_a_second_process_cannot_run_a_running_thread() {
    let schemas = PgSchemas::new();
    let schema = schemas.name();
    let saver = schemas.saver(&schema).await;
    let url = url();
    lease_race(Arc::new(saver), |dir, thread| {
        ["continue", "postgres", &url, &schema, dir, thread]
            .map(String::from)
            .to_vec()
    })
    .await;
}
