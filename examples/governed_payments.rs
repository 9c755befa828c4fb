//! A payment that two people from finance must approve, or that is rejected by itself
//! after four hours; every decision is recorded in a hash chain that shows tampering.
//!
//! Run with `cargo run -p hitl-examples --example governed_payments`.
//!
//! Two invoices are paid by a scripted agent on an SQLite file (in a temporary
//! directory). The first is approved by alice and bob (mallory, from sales, is turned
//! away; alice approving twice counts once); nobody answers the second, and four hours
//! later `expire_due` rejects it with the declared message. Then the decision records
//! are printed and verified, a record is changed behind the saver's back, and the
//! verification names it.

use std::time::{Duration, SystemTime};

use hitl_runtime::agent::{Agent, HumanInTheLoop, create_agent};
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    Checkpointer, Command, Message, Reviewer, RunConfig, SqliteSaver, ToolCall, ToolError, tool,
    tools,
};
use serde_json::json;

/// Pay an invoice.
#[tool(interrupt(
    allowed = [approve, reject],
    description = "Pay {amount} EUR to {to}",
    expires = "4h",
    on_timeout = reject("No answer within 4 hours"),
    reviewers = ["finance"],
    approvals = 2,
))]
async fn pay(amount: u64, to: String) -> Result<String, ToolError> {
    Ok(format!("paid {amount} EUR to {to}"))
}

fn agent(saver: SqliteSaver, invoices: &[(u64, &str)]) -> Agent {
    let mut turns = Vec::new();
    for (i, (amount, to)) in invoices.iter().enumerate() {
        let args = PayArgs {
            amount: *amount,
            to: (*to).to_owned(),
        };
        turns.push(Message::assistant_with_tools(
            "",
            vec![ToolCall::of(args, format!("call-{i}"))],
        ));
        turns.push(Message::assistant("Done."));
    }
    create_agent(ScriptedModel::turns(turns))
        .tools(tools![pay])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(saver)
        .build()
        .expect("a valid agent")
}

fn approve() -> serde_json::Value {
    json!({"decisions": [{"type": "approve"}]})
}

fn finance(id: &str) -> Reviewer {
    Reviewer::new(id).role("finance")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hitl-governed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("payments.db");
    let saver = SqliteSaver::open(&path).await?;
    let app = agent(saver.clone(), &[(1200, "ACME"), (90, "Globex")]);

    println!("== invoice-1: 1200 EUR to ACME");
    let first = RunConfig::thread("invoice-1");
    let out = app.invoke(Message::user("Pay invoice 1"), &first).await?;
    let g = out.interrupts[0].governance.clone().expect("governed");
    println!(
        "pending: needs {} approvals from role {}, expires {} s after it was raised",
        g.approvals,
        g.roles_text(),
        (g.expires_at.unwrap_or_default() - g.raised_at) / 1000
    );
    let refused = app
        .invoke(
            Command::resume(approve()).by(Reviewer::new("mallory").role("sales")),
            &first,
        )
        .await
        .unwrap_err();
    println!("mallory: {refused}");
    for who in ["alice", "alice", "bob"] {
        let out = app
            .invoke(Command::resume(approve()).by(finance(who)), &first)
            .await?;
        match out.interrupts.first() {
            Some(p) => println!(
                "{who} approves: still pending, approved by {:?}",
                p.approved_by
            ),
            None => println!("{who} approves: {:?}", out.values.messages[2].text()),
        }
    }

    println!("\n== invoice-2: 90 EUR to Globex, nobody answers");
    let second = RunConfig::thread("invoice-2");
    app.invoke(Message::user("Pay invoice 2"), &second).await?;
    let four_hours_later = SystemTime::now() + Duration::from_secs(4 * 3600 + 1);
    for expired in app.expire_due(four_hours_later).await? {
        println!(
            "expired on {}: {:?}",
            expired.thread,
            expired.result.as_ref().map_err(ToString::to_string)
        );
    }
    let state = app.get_state(&second).await?;
    println!("tool result: {:?}", state.values.messages[2].text());

    for thread in ["invoice-1", "invoice-2"] {
        println!("\n== decision records of {thread}");
        for entry in app.decision_records(thread).await? {
            let r = entry.record()?;
            let who = match &r.decided_by {
                Some(hitl_runtime::DecidedBy::Reviewer(rv)) => rv.id.clone(),
                Some(hitl_runtime::DecidedBy::Timeout) => "(timeout)".into(),
                None => "(anonymous)".into(),
            };
            println!(
                "#{} {:?} by {who}: {} | prev {} | hash {}",
                entry.seq,
                r.outcome,
                r.answer,
                entry.prev_hash.as_deref().map_or("-", |h| &h[..12]),
                &entry.hash[..12]
            );
        }
        let report = saver.verify_decisions(thread).await?;
        println!(
            "verified: {} records, head {}",
            report.records,
            &report.head.unwrap_or_default()[..12]
        );
    }

    println!("\n== someone edits record 2 of invoice-1 in the database file");
    let db = rusqlite::Connection::open(&path)?;
    db.execute_batch(
        "DROP TRIGGER hitl_decisions_no_update;
         UPDATE hitl_decisions SET body = replace(body, '\"alice\"', '\"mallory\"')
         WHERE thread = 'invoice-1' AND seq = 2;",
    )?;
    match saver.verify_decisions("invoice-1").await {
        Ok(report) => println!("not detected ({} records)", report.records),
        Err(e) => println!("detected: {e}"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
