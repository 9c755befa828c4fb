//! Checks of governed interrupts: decision records (chained, append-only, written with
//! the answer), expiry, reviewer roles and quorum.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Harness;
use crate::checkpoint::{Checkpointer, DecisionRecord, Outcome, RecordQuery, WriteKind};
use crate::error::{CheckpointError, ResumeError, RunError};
use crate::governance::{DecidedBy, GovernanceSpec, Reviewer};
use crate::interrupt::{InterruptRequest, ResumeKind, Vote};
use crate::{Command, CompiledGraph, NodeContext, RunConfig, RunStatus, START, State, StateGraph};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Ask {
    /// How long the question may wait, in ms (0: it does not expire).
    expires_ms: u64,
    answer: String,
}

/// Answers of kind `vote`: `"yes"` approves.
struct Votes;

impl ResumeKind for Votes {
    fn check(&self, _: &Value, answer: &Value) -> Result<(), Vec<String>> {
        match answer.as_str() {
            Some("yes" | "no" | "late") => Ok(()),
            _ => Err(vec!["answer \"yes\" or \"no\"".into()]),
        }
    }

    fn vote(&self, _: &Value, answer: &Value) -> Vote {
        if answer == "yes" {
            Vote::Approves
        } else {
            Vote::Decides
        }
    }
}

/// One node asking a question only `ops` may answer, answered `"late"` on timeout and
/// needing `approvals` distinct approvals.
fn ask_graph(saver: impl Checkpointer, approvals: u32) -> CompiledGraph<Ask> {
    let mut g = StateGraph::<Ask>::new();
    let ask = g.add_node("ask", move |s: Arc<Ask>, cx: NodeContext| async move {
        let spec = GovernanceSpec {
            expires: (s.expires_ms > 0).then(|| Duration::from_millis(s.expires_ms)),
            on_timeout: (s.expires_ms > 0).then(|| json!("late")),
            reviewers: vec![vec!["ops".into()]],
            approvals,
            ..GovernanceSpec::default()
        };
        let answer = cx.interrupt_with(
            InterruptRequest {
                kind: Some("vote".into()),
                ..InterruptRequest::new(json!("ship it?"))
            }
            .governed(spec),
        )?;
        Ok(AskUpdate::default().answer(answer.as_str().unwrap_or("").to_owned()))
    });
    g.add_edge(START, ask);
    g.add_edge(ask, crate::END);
    g.compile()
        .checkpointer(saver)
        .resume_validator("vote", Votes)
        .build()
        .expect("valid graph")
}

fn ops(id: &str) -> Reviewer {
    Reviewer::new(id).role("ops")
}

async fn records(saver: &impl Checkpointer, thread: &str) -> Vec<DecisionRecord> {
    saver
        .decision_records(&RecordQuery::thread(thread))
        .await
        .expect("records")
        .iter()
        .map(|e| e.record().expect("a record decodes"))
        .collect()
}

async fn start(app: &CompiledGraph<Ask>, thread: &str, expires_ms: u64) {
    let out = app
        .invoke(
            Ask {
                expires_ms,
                ..Ask::default()
            },
            &RunConfig::thread(thread),
        )
        .await
        .expect("start");
    assert_eq!(out.status, RunStatus::Interrupted);
}

/// Every answer appends a record, numbered and chained per thread, written with the
/// answer; refused answers append nothing; records outlive their thread and can be
/// read per reviewer.
pub async fn decision_records_are_chained_and_kept<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = ask_graph(saver.clone(), 1);
    start(&app, "a", 3_600_000).await;
    start(&app, "b", 0).await;

    // No reviewer, or one without the role: refused, nothing stored.
    let e = app
        .invoke(Command::resume("yes"), &RunConfig::thread("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RunError::Resume(ResumeError::Unauthorized { ref needs, reviewer: None, .. }) if needs == "ops"),
        "{e}"
    );
    let e = app
        .invoke(
            Command::resume("yes").by(Reviewer::new("eve").role("sales")),
            &RunConfig::thread("b"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("`eve` does not have it"), "{e}");
    assert!(records(&saver, "b").await.is_empty());
    assert_eq!(
        app.get_state(&RunConfig::thread("b"))
            .await
            .unwrap()
            .interrupts
            .len(),
        1,
        "a refused answer leaves the interrupt pending"
    );

    let out = app
        .invoke(
            Command::resume("yes").by(ops("alice")),
            &RunConfig::thread("a"),
        )
        .await
        .unwrap();
    assert_eq!(out.values.answer, "yes");
    app.invoke(
        Command::resume("no").by(ops("bob")),
        &RunConfig::thread("b"),
    )
    .await
    .unwrap();

    let a = records(&saver, "a").await;
    assert_eq!(a.len(), 1);
    let r = &a[0];
    assert_eq!(r.thread, "a");
    assert_eq!(r.answer, json!("yes"));
    assert_eq!(r.outcome, Outcome::Decided);
    assert_eq!(r.decided_by, Some(DecidedBy::Reviewer(ops("alice"))));
    assert_eq!(r.node, "ask");
    assert_eq!(
        r.payload_digest,
        crate::checkpoint::sha256_hex(b"\"ship it?\"")
    );
    let (raised, due) = (r.raised_at.expect("raised_at"), r.due_at.expect("due_at"));
    assert_eq!(due - raised, 3_600_000);
    assert!(r.decided_at >= raised);

    let report = saver.verify_decisions("a").await.unwrap();
    assert_eq!(report.records, 1);
    let by_bob = saver
        .decision_records(&RecordQuery::reviewer("bob"))
        .await
        .unwrap();
    assert_eq!(by_bob.len(), 1);
    assert_eq!(by_bob[0].record().unwrap().thread, "b");

    // A second decision on the same thread chains to the first.
    start(&app, "a", 0).await;
    app.invoke(
        Command::resume("no").by(ops("carol")),
        &RunConfig::thread("a"),
    )
    .await
    .unwrap();
    let entries = saver
        .decision_records(&RecordQuery::thread("a"))
        .await
        .unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        entries[1].prev_hash.as_deref(),
        Some(entries[0].hash.as_str())
    );
    assert_eq!(saver.verify_decisions("a").await.unwrap().records, 2);

    // Deleting the thread keeps its records.
    saver.delete_thread("a").await.unwrap();
    assert_eq!(saver.verify_decisions("a").await.unwrap().records, 2);

    // Records go in the answer's transaction: an answer refused by the saver (not on
    // the head any more) appends nothing.
    start(&app, "c", 0).await;
    let head = saver.head("c", "").await.unwrap().unwrap();
    app.invoke(
        Command::resume("no").by(ops("dan")),
        &RunConfig::thread("c"),
    )
    .await
    .unwrap();
    let stale = saver
        .put_decisions(
            "c",
            "",
            head,
            vec![crate::checkpoint::pending::write(
                crate::TaskId::NULL,
                WriteKind::RESUME_BASE_IDX,
                WriteKind::Resume,
                &json!({"interrupt": "00000000000000000000000000000000", "value": "yes"}),
            )],
            vec![r.clone()],
        )
        .await;
    assert!(
        matches!(stale, Err(CheckpointError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(records(&saver, "c").await.len(), 1);
}

/// A due interrupt gets its timeout answer once, from the system, recorded; a person's
/// late answer is refused and changes nothing.
pub async fn expired_interrupts_time_out_once<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = ask_graph(saver.clone(), 1);
    start(&app, "soon", 60_000).await;
    start(&app, "never", 0).await;
    let now = SystemTime::now();
    assert!(app.expire_due(now).await.unwrap().is_empty());

    let later = now + Duration::from_secs(120);
    let expired = app.expire_due(later).await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].thread, "soon");
    assert!(
        matches!(expired[0].result, Ok(RunStatus::Done)),
        "{expired:?}"
    );
    let state = app.get_state(&RunConfig::thread("soon")).await.unwrap();
    assert_eq!(state.values.answer, "late");
    let r = records(&saver, "soon").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].decided_by, Some(DecidedBy::Timeout));
    assert!(
        app.expire_due(later).await.unwrap().is_empty(),
        "applied once"
    );
    assert_eq!(
        app.get_state(&RunConfig::thread("never"))
            .await
            .unwrap()
            .interrupts
            .len(),
        1
    );

    // A person answering after the deadline (real time): refused, nothing stored.
    start(&app, "quick", 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let e = app
        .invoke(
            Command::resume("yes").by(ops("alice")),
            &RunConfig::thread("quick"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RunError::Resume(ResumeError::Expired {
                has_timeout_answer: true,
                ..
            })
        ),
        "{e}"
    );
    assert!(records(&saver, "quick").await.is_empty());
    let expired = app.expire_due(SystemTime::now()).await.unwrap();
    assert_eq!(expired.len(), 1);
    let state = app.get_state(&RunConfig::thread("quick")).await.unwrap();
    assert_eq!(state.values.answer, "late");
}

/// With `approvals = 2`, an interrupt stays pending until two distinct reviewers
/// approved (the same one twice counts once); a decline decides at once.
pub async fn quorum_counts_distinct_reviewers<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let app = ask_graph(saver.clone(), 2);
    start(&app, "q", 0).await;
    let cfg = RunConfig::thread("q");
    for _ in 0..2 {
        let out = app
            .invoke(Command::resume("yes").by(ops("alice")), &cfg)
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        assert_eq!(out.interrupts[0].approved_by, ["alice"]);
    }
    let pending = app.get_state(&cfg).await.unwrap().interrupts;
    assert_eq!(pending[0].approved_by, ["alice"]);
    assert_eq!(pending[0].governance.as_ref().unwrap().approvals, 2);
    let out = app
        .invoke(Command::resume("yes").by(ops("bob")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(out.values.answer, "yes");
    let outcomes: Vec<Outcome> = records(&saver, "q")
        .await
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Approval {
                count: 1,
                required: 2
            },
            Outcome::Approval {
                count: 1,
                required: 2
            },
            Outcome::Decided
        ]
    );

    // A decline decides alone.
    start(&app, "v", 0).await;
    let cfg = RunConfig::thread("v");
    app.invoke(Command::resume("yes").by(ops("alice")), &cfg)
        .await
        .unwrap();
    let out = app
        .invoke(Command::resume("no").by(ops("carol")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.values.answer, "no");
    assert_eq!(saver.verify_decisions("v").await.unwrap().records, 2);
}
