//! Approvals you can trust: reviewer roles, quorum, expiry, decision records, version
//! binding and the authorize hook, on agent reviews.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hitl_runtime::agent::{Agent, HitlRequest, HumanInTheLoop, ReviewMode, create_agent};
use hitl_runtime::checkpoint::{Checkpointer, RecordQuery};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    CheckpointError, Command, DecidedBy, InMemorySaver, Message, ResumeError, Reviewer, RunConfig,
    RunError, RunStatus, SqliteSaver, ToolCall, ToolError, tool, tools,
};
use serde_json::json;

/// The amounts paid (each test pays its own amount, so tests running at once do not
/// disturb each other).
static PAID: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Pay someone.
#[tool(interrupt(
    allowed = [approve, reject],
    description = "Pay {amount} to {to}",
    expires = "4h",
    on_timeout = reject("No answer within 4 hours"),
    reviewers = ["finance"],
    approvals = 2,
))]
async fn pay(amount: u64, to: String) -> Result<String, ToolError> {
    PAID.lock().unwrap().push(amount);
    Ok(format!("paid {amount} to {to}"))
}

fn pay_turns(amount: u64) -> Vec<Message> {
    vec![
        Message::assistant_with_tools(
            "",
            vec![ToolCall::of(
                PayArgs {
                    amount,
                    to: "acme".into(),
                },
                "p1",
            )],
        ),
        Message::assistant("done"),
    ]
}

fn payments(saver: impl Checkpointer, amount: u64, mode: ReviewMode) -> Agent {
    create_agent(ScriptedModel::turns(pay_turns(amount)))
        .tools(tools![pay])
        .middleware(HumanInTheLoop::from_tools().mode(mode))
        .checkpointer(saver)
        .build()
        .unwrap()
}

fn finance(id: &str) -> Reviewer {
    Reviewer::new(id).role("finance")
}

fn approve() -> serde_json::Value {
    json!({"decisions": [{"type": "approve"}]})
}

fn paid(amount: u64) -> usize {
    PAID.lock()
        .unwrap()
        .iter()
        .filter(|a| **a == amount)
        .count()
}

#[tokio::test]
async fn a_review_shows_its_governance_on_the_wire() {
    let app = payments(InMemorySaver::new(), 1, ReviewMode::Batched);
    let cfg = RunConfig::thread("wire");
    let out = app.invoke(Message::user("pay"), &cfg).await.unwrap();
    let pending = &out.interrupts[0];
    let request: HitlRequest = serde_json::from_value(pending.value.clone()).unwrap();
    let config = &request.review_configs[0];
    let governance = pending.governance.as_ref().unwrap();
    assert_eq!(config.rules.expires_at, governance.expires_at);
    assert_eq!(
        governance.expires_at.unwrap() - governance.raised_at,
        4 * 3600 * 1000
    );
    assert_eq!(governance.reviewers, [["finance"]]);
    assert_eq!(governance.approvals, 2);
    assert_eq!(governance.tools, ["pay"]);
    insta::assert_json_snapshot!("governed_review_request", pending.value, {
        ".review_configs[].expires_at" => "[ms since the epoch]",
        ".review_configs[].args_schema" => "[schema]",
    });
}

#[tokio::test]
async fn two_finance_reviewers_must_approve_a_payment() {
    let saver = InMemorySaver::new();
    let app = payments(saver.clone(), 2_000, ReviewMode::Batched);
    let cfg = RunConfig::thread("quorum");
    app.invoke(Message::user("pay"), &cfg).await.unwrap();

    let e = app
        .invoke(Command::resume(approve()), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(e, RunError::Resume(ResumeError::Unauthorized { .. })),
        "{e}"
    );
    let e = app
        .invoke(
            Command::resume(approve()).by(Reviewer::new("mallory").role("sales")),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("role finance"), "{e}");

    for _ in 0..2 {
        let out = app
            .invoke(Command::resume(approve()).by(finance("alice")), &cfg)
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Interrupted);
        assert_eq!(out.interrupts[0].approved_by, ["alice"]);
    }
    assert_eq!(paid(2_000), 0, "one approver is not enough");
    let out = app
        .invoke(Command::resume(approve()).by(finance("bob")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(paid(2_000), 1);

    let records = app.decision_records("quorum").await.unwrap();
    assert_eq!(records.len(), 3);
    let last = records[2].record().unwrap();
    assert_eq!(last.tools, ["pay"]);
    assert_eq!(last.decided_by, Some(DecidedBy::Reviewer(finance("bob"))));
    assert!(last.policy_digest.is_some());
    assert_eq!(saver.verify_decisions("quorum").await.unwrap().records, 3);
}

#[tokio::test]
async fn one_rejection_vetoes_a_payment() {
    let app = payments(InMemorySaver::new(), 3, ReviewMode::PerCall);
    let cfg = RunConfig::thread("veto");
    app.invoke(Message::user("pay"), &cfg).await.unwrap();
    let out = app
        .invoke(
            Command::resume(json!({"type": "approve"})).by(finance("alice")),
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted, "one approval of two");
    let out = app
        .invoke(
            Command::resume(json!({"type": "reject", "message": "wrong vendor"}))
                .by(finance("bob")),
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    let text = format!("{:?}", out.values.messages);
    assert!(text.contains("wrong vendor"), "{text}");
    assert_eq!(paid(3), 0, "a vetoed payment does not run");
}

static NOTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Write a note.
#[tool(interrupt(allowed = [approve, reject]))]
async fn note(text: String) -> Result<String, ToolError> {
    NOTED.lock().unwrap().push(text.clone());
    Ok(format!("noted {text}"))
}

#[tokio::test]
async fn a_mixed_answer_counts_only_as_the_approval_that_completes_a_quorum() {
    let turns = vec![
        Message::assistant_with_tools(
            "",
            vec![
                ToolCall::of(
                    PayArgs {
                        amount: 8,
                        to: "acme".into(),
                    },
                    "p1",
                ),
                ToolCall::of(
                    NoteArgs {
                        text: "mixed".into(),
                    },
                    "n1",
                ),
            ],
        ),
        Message::assistant("done"),
    ];
    let app = create_agent(ScriptedModel::turns(turns))
        .tools(tools![pay, note])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("mixed");
    app.invoke(Message::user("pay and note"), &cfg)
        .await
        .unwrap();
    let mixed = || json!({"decisions": [{"type": "approve"}, {"type": "reject"}]});
    let both = json!({"decisions": [{"type": "approve"}, {"type": "approve"}]});

    // Approving the payment while declining the note, with one approval of two: refused.
    let e = app
        .invoke(Command::resume(mixed()).by(finance("alice")), &cfg)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("approves some calls and declines others while 1 of 2 approvals are given"),
        "{e}"
    );
    assert!(app.decision_records("mixed").await.unwrap().is_empty());
    let out = app
        .invoke(Command::resume(both).by(finance("alice")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Interrupted);
    // The second approver's mixed answer completes the quorum and decides.
    let out = app
        .invoke(Command::resume(mixed()).by(finance("bob")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(paid(8), 1);
    assert!(!NOTED.lock().unwrap().contains(&"mixed".to_owned()));
}

#[tokio::test]
async fn an_expired_payment_is_rejected_by_the_system_and_recorded() {
    let saver = InMemorySaver::new();
    let app = payments(saver.clone(), 4_000, ReviewMode::Batched);
    let cfg = RunConfig::thread("late");
    app.invoke(Message::user("pay"), &cfg).await.unwrap();
    let now = SystemTime::now();
    assert!(
        app.expire_due(now + Duration::from_secs(3 * 3600))
            .await
            .unwrap()
            .is_empty()
    );
    let expired = app
        .expire_due(now + Duration::from_secs(5 * 3600))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert!(matches!(expired[0].result, Ok(RunStatus::Done)));
    let state = app.get_state(&cfg).await.unwrap();
    let text = format!("{:?}", state.values.messages);
    assert!(text.contains("No answer within 4 hours"), "{text}");
    assert_eq!(paid(4_000), 0);
    let record = app.decision_records("late").await.unwrap()[0]
        .record()
        .unwrap();
    assert_eq!(record.decided_by, Some(DecidedBy::Timeout));
    assert_eq!(
        record.answer,
        json!({"decisions": [{"type": "reject", "message": "No answer within 4 hours"}]})
    );
}

#[tokio::test]
async fn the_authorize_hook_stops_an_approved_call() {
    let app = create_agent(ScriptedModel::turns(pay_turns(5)))
        .tools(tools![pay])
        .middleware(
            HumanInTheLoop::from_tools().authorize(|req| match req.reviewer {
                Some(r) if r.id == "alice" => Err("alice's mandate ended".into()),
                _ => Ok(()),
            }),
        )
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("mandate");
    app.invoke(Message::user("pay"), &cfg).await.unwrap();
    app.invoke(Command::resume(approve()).by(finance("carol")), &cfg)
        .await
        .unwrap();
    let out = app
        .invoke(Command::resume(approve()).by(finance("alice")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    let text = format!("{:?}", out.values.messages);
    assert!(text.contains("alice's mandate ended"), "{text}");
    assert_eq!(paid(5), 0);
}

mod v2 {
    use hitl_runtime::{ToolError, tool};

    /// Pay someone.
    #[tool(interrupt(
        allowed = [approve, reject],
        description = "Pay {amount} to {to} (v2)",
        reviewers = ["finance"],
    ))]
    pub(crate) async fn pay(amount: u64, to: String) -> Result<String, ToolError> {
        Ok(format!("v2 paid {amount} to {to}"))
    }
}

#[tokio::test]
async fn a_review_raised_under_another_policy_is_refused_unless_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.db");
    let before = payments(
        SqliteSaver::open(&path).await.unwrap(),
        6,
        ReviewMode::Batched,
    );
    let cfg = RunConfig::thread("deploy");
    before.invoke(Message::user("pay"), &cfg).await.unwrap();
    drop(before);

    let path = &path;
    let after = |migrate: bool| async move {
        let mut hitl = HumanInTheLoop::from_tools();
        if migrate {
            hitl = hitl.on_policy_change(|change| change.tool == "pay");
        }
        create_agent(ScriptedModel::turns(pay_turns(6)))
            .tools(tools![v2::pay])
            .middleware(hitl)
            .checkpointer(SqliteSaver::open(path).await.unwrap())
            .build()
            .unwrap()
    };
    let app = after(false).await;
    let e = app
        .invoke(Command::resume(approve()).by(finance("alice")), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RunError::Resume(ResumeError::PolicyChanged { tool, current: Some(_), .. }) if tool == "pay"),
        "{e}"
    );
    assert!(app.decision_records("deploy").await.unwrap().is_empty());
    assert_eq!(app.get_state(&cfg).await.unwrap().interrupts.len(), 1);

    // A migration accepts the pending call; the review's own rules still apply.
    let app = after(true).await;
    let out = app
        .invoke(Command::resume(approve()).by(finance("alice")), &cfg)
        .await
        .unwrap();
    assert_eq!(
        out.status,
        RunStatus::Interrupted,
        "two approvals were asked"
    );
    let out = app
        .invoke(Command::resume(approve()).by(finance("bob")), &cfg)
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Done);
    assert!(format!("{:?}", out.values.messages).contains("v2 paid 6"));
}

#[tokio::test]
async fn changed_or_deleted_records_are_detected_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.db");
    let saver = SqliteSaver::open(&path).await.unwrap();
    let app = payments(saver.clone(), 7, ReviewMode::Batched);
    let cfg = RunConfig::thread("audit");
    app.invoke(Message::user("pay"), &cfg).await.unwrap();
    for who in ["alice", "bob"] {
        app.invoke(Command::resume(approve()).by(finance(who)), &cfg)
            .await
            .unwrap();
    }
    let report = saver.verify_decisions("audit").await.unwrap();
    assert_eq!(report.records, 2);

    let db = rusqlite::Connection::open(&path).unwrap();
    let refused = db
        .execute(
            "UPDATE hitl_decisions SET body = replace(body, 'alice', 'mallory')",
            [],
        )
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    assert!(
        db.execute("DELETE FROM hitl_decisions", [])
            .unwrap_err()
            .to_string()
            .contains("append-only")
    );

    // Someone with write access to the file goes around the triggers.
    db.execute_batch(
        "DROP TRIGGER hitl_decisions_no_update; DROP TRIGGER hitl_decisions_no_delete;",
    )
    .unwrap();
    db.execute(
        "UPDATE hitl_decisions SET body = replace(body, 'alice', 'mallory') WHERE seq = 1",
        [],
    )
    .unwrap();
    let e = saver.verify_decisions("audit").await.unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Tampered(c) if c.seq == 1),
        "{e}"
    );
    assert!(e.to_string().contains("changed after it was sealed"), "{e}");
    db.execute(
        "UPDATE hitl_decisions SET body = replace(body, 'mallory', 'alice') WHERE seq = 1",
        [],
    )
    .unwrap();
    db.execute("DELETE FROM hitl_decisions WHERE seq = 1", [])
        .unwrap();
    let e = saver.verify_decisions("audit").await.unwrap_err();
    assert!(e.to_string().contains("record 1 is missing"), "{e}");
    let by_bob = saver
        .decision_records(&RecordQuery::reviewer("bob"))
        .await
        .unwrap();
    assert_eq!(by_bob.len(), 1);
}

#[tokio::test]
async fn two_processes_with_different_tool_definitions_share_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("threads.db");
    let db = db.to_str().unwrap();
    let worker = |version: &str, step: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hitl-crash-worker"))
            .args(["policy", version, db, "invoice", step])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(worker("v1", "raise"), "raised");
    // A process built with v2 of `pay` refuses the review raised under v1.
    assert_eq!(worker("v2", "resume"), "policy-changed pay");
    // Nothing was stored: a v1 process answers it, and the call runs.
    assert_eq!(worker("v1", "resume"), "ran: v1 paid 40");
}
