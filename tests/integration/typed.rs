//! Typed all the way to the human: interrupts that say what they are, typed answers,
//! the typed scripted reviewer, transcripts, record and replay.

use hitl_runtime::agent::{
    Agent, HitlRequest, HumanInTheLoop, ReviewMode, ToolApprovalRequest, create_agent,
};
use hitl_runtime::policy::DecisionType;
use hitl_runtime::testing::{
    FlowError, Recorder, ScriptedModel, ScriptedReviewer, run_with_reviewer,
};
use hitl_runtime::{
    Answer, Command, Decision, HitlResponse, InMemorySaver, Interrupt, Message, RunConfig, Tool,
    ToolCall, ToolContext, ToolError, tool, tools,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The reviewer's answer to a large transfer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct TransferDecision {
    approved: bool,
}

/// What the reviewer is shown about a large transfer.
#[derive(Debug, Serialize, Deserialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
pub(crate) struct LargeTransfer {
    amount: f64,
    to: String,
}

/// Transfer money; transfers over 1000 ask a human.
#[tool]
async fn transfer(cx: ToolContext, amount: f64, to: String) -> Result<String, ToolError> {
    if amount > 1000.0 {
        let decision = cx
            .interrupt(LargeTransfer {
                amount,
                to: to.clone(),
            })
            .await?;
        if !decision.approved {
            return Ok(format!(
                "Transfer of {amount} to {to} cancelled by the reviewer"
            ));
        }
    }
    Ok(format!("Transferred {amount} to {to}"))
}

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject]))]
async fn send_email(to: String) -> Result<String, ToolError> {
    Ok(format!("sent to {to}"))
}

/// Delete a file: the policy lists reject first.
#[tool(interrupt(allowed = [reject, approve], description = "Delete {path}?"))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(format!("deleted {path}"))
}

fn agent(turns: Vec<Message>, mode: ReviewMode) -> Agent {
    create_agent(ScriptedModel::turns(turns))
        .tools(tools![transfer, send_email, delete_file])
        .middleware(HumanInTheLoop::from_tools().mode(mode))
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

fn calls(calls: Vec<ToolCall>) -> Message {
    Message::assistant_with_tools("", calls)
}

/// A turn calling `send_email` (e1) then `delete_file` (d1), then "ok".
fn email_then_delete() -> Vec<Message> {
    vec![
        calls(vec![
            ToolCall::of(SendEmailArgs { to: "a".into() }, "e1"),
            ToolCall::of(
                DeleteFileArgs {
                    path: "x.txt".into(),
                },
                "d1",
            ),
        ]),
        Message::assistant("ok"),
    ]
}

#[tokio::test]
async fn pending_interrupts_say_what_raised_them_and_take_typed_answers_in_one_resume() {
    let agent = agent(
        vec![
            calls(vec![
                ToolCall::of(
                    TransferArgs {
                        amount: 5000.0,
                        to: "bob".into(),
                    },
                    "t1",
                ),
                ToolCall::of(SendEmailArgs { to: "alice".into() }, "e1"),
            ]),
            Message::assistant("Done."),
        ],
        ReviewMode::PerCall,
    );
    let cfg = RunConfig::thread("typed");
    let out = agent.invoke(Message::user("pay"), &cfg).await.unwrap();
    assert_eq!(out.interrupts.len(), 2);
    let mut answers = Vec::new();
    for pending in &out.interrupts {
        if let Some(asked) = pending.downcast::<LargeTransfer>() {
            let asked = asked.unwrap();
            assert_eq!(pending.type_name(), Some("LargeTransfer"));
            assert!(!pending.is::<ToolApprovalRequest>());
            assert_eq!(
                (asked.payload.amount, asked.payload.to.as_str()),
                (5000.0, "bob")
            );
            answers.push(asked.answer(TransferDecision { approved: true }));
        } else if let Some(asked) = pending.downcast::<ToolApprovalRequest>() {
            let asked = asked.unwrap();
            assert_eq!(pending.type_name(), Some("hitl.tool_approval"));
            assert_eq!(asked.payload.name, "send_email");
            assert!(pending.downcast::<HitlRequest>().is_none());
            answers.push(asked.answer(Decision::edit::<send_email>(SendEmailArgs {
                to: "carol".into(),
            })));
        } else {
            panic!("unexpected interrupt {pending:?}");
        }
    }
    let out = agent.invoke(Command::answers(answers), &cfg).await.unwrap();
    assert!(!out.is_interrupted(), "{:?}", out.interrupts);
    let texts: Vec<String> = out.values.messages.iter().map(Message::text).collect();
    assert!(
        texts.contains(&"Transferred 5000 to bob".to_owned()),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.ends_with("sent to carol")),
        "the edit ran: {texts:?}"
    );
}

#[tokio::test]
async fn a_batched_review_reads_as_its_typed_request_and_a_json_answer_still_works() {
    let agent = agent(email_then_delete(), ReviewMode::Batched);
    let cfg = RunConfig::thread("batched");
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let pending = &out.interrupts[0];
    assert!(pending.is::<HitlRequest>());
    assert_eq!(pending.type_name(), Some("hitl.batched"));
    let review = pending.downcast::<HitlRequest>().unwrap().unwrap();
    let names: Vec<&str> = review
        .payload
        .action_requests
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["send_email", "delete_file"]);
    assert_eq!(
        review.payload.action_requests[1].description,
        "Delete x.txt?"
    );
    // The order the policy declares, not a sorted one.
    assert_eq!(
        review.payload.review_configs[1].allowed_decisions,
        [DecisionType::Reject, DecisionType::Approve]
    );
    assert_eq!(
        pending.value["review_configs"][1]["allowed_decisions"],
        json!(["reject", "approve"])
    );
    assert!(pending.downcast::<LargeTransfer>().is_none());

    // A JSON answer for clients that only have JSON; a wrong one changes nothing.
    let err = agent
        .invoke(
            Command::answers([Answer::json(pending.id, json!({"decisions": []}))]),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("decisions"), "{err}");
    let typed = review.answer(HitlResponse::from([
        Decision::approve::<send_email>(),
        Decision::reject::<delete_file>("keep it"),
    ]));
    assert_eq!(typed.id(), pending.id);
    let out = agent.invoke(Command::answers([typed]), &cfg).await.unwrap();
    assert!(!out.is_interrupted());
}

#[tokio::test]
async fn a_detached_context_reports_a_malformed_answer_as_a_decode_error() {
    let args = || TransferArgs {
        amount: 5000.0,
        to: "bob".into(),
    };
    let cx = ToolContext::detached("transfer", "t1", [json!({"approved": "yes"})]);
    let err = transfer::call(args(), cx).await.unwrap_err();
    match &err {
        ToolError::InvalidAnswer {
            tool,
            expected,
            message,
        } => {
            assert_eq!(tool, "transfer");
            assert!(expected.ends_with("TransferDecision"), "{expected}");
            assert!(message.contains("expected a boolean"), "{message}");
        }
        other => panic!("expected InvalidAnswer, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("the answer to `transfer`'s interrupt does not decode")
    );

    // No answer left: the call pauses. A well-formed answer: it runs.
    let cx = ToolContext::detached("transfer", "t1", []);
    assert_eq!(
        transfer::call(args(), cx).await.unwrap_err(),
        ToolError::Interrupted
    );
    let cx = ToolContext::detached("transfer", "t1", [json!({"approved": false})]);
    assert_eq!(
        transfer::call(args(), cx).await.unwrap(),
        json!("Transfer of 5000 to bob cancelled by the reviewer")
    );
}

fn transfer_agent() -> Agent {
    agent(
        vec![
            calls(vec![
                ToolCall::of(
                    TransferArgs {
                        amount: 250.0,
                        to: "alice".into(),
                    },
                    "t1",
                ),
                ToolCall::of(
                    TransferArgs {
                        amount: 5000.0,
                        to: "bob".into(),
                    },
                    "t2",
                ),
                ToolCall::of(
                    TransferArgs {
                        amount: 20000.0,
                        to: "eve".into(),
                    },
                    "t3",
                ),
            ]),
            Message::assistant("Paid alice and bob; the transfer to eve was cancelled."),
        ],
        ReviewMode::Batched,
    )
}

#[tokio::test]
async fn the_scripted_reviewer_answers_typed_custom_interrupts() {
    let reviewer = ScriptedReviewer::new().answer_with(|t: LargeTransfer| TransferDecision {
        approved: t.amount < 10_000.0,
    });
    let t = run_with_reviewer(
        &transfer_agent(),
        "Pay alice 250, bob 5000 and eve 20000.",
        &RunConfig::thread("threshold"),
        &reviewer,
    )
    .await
    .unwrap();
    insta::assert_snapshot!(t.to_string(), @r#"
    user: Pay alice 250, bob 5000 and eve 20000.
    ai:
      call transfer {"amount":250.0,"to":"alice"}
      call transfer {"amount":5000.0,"to":"bob"}
      call transfer {"amount":20000.0,"to":"eve"}
    tool transfer: Transferred 250 to alice
    interrupt LargeTransfer at tools: {"amount":5000.0,"to":"bob"}
    interrupt LargeTransfer at tools: {"amount":20000.0,"to":"eve"}
    decisions: answer LargeTransfer: {"approved":true}; answer LargeTransfer: {"approved":false}
    tool transfer: Transferred 5000 to bob
    tool transfer: Transfer of 20000 to eve cancelled by the reviewer
    ai: Paid alice and bob; the transfer to eve was cancelled.
    "#);
}

#[tokio::test]
async fn a_missing_scripted_decision_names_the_tool_and_the_call() {
    let agent = agent(email_then_delete(), ReviewMode::Batched);
    let reviewer = ScriptedReviewer::new().approve::<send_email>();
    let err = run_with_reviewer(&agent, "go", &RunConfig::thread("missing"), &reviewer)
        .await
        .unwrap_err();
    let FlowError::NoDecision { what, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(what, "`delete_file` (call 2 of the review)");
    let text = err.to_string();
    assert!(text.len() < 400, "short: {text}");
    assert!(text.contains("`reject::<Tool>(..)`"), "{text}");

    // A typed interrupt without an answer function names its type.
    let err = run_with_reviewer(
        &transfer_agent(),
        "pay",
        &RunConfig::thread("missing-typed"),
        &ScriptedReviewer::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("interrupt `LargeTransfer` of node `tools`; add `.answer_with(|payload: LargeTransfer| ..)`"),
        "{err}"
    );
}

#[tokio::test]
async fn transcripts_list_tool_results_in_call_order_without_trailing_whitespace() {
    // The rejected second call is answered during the review, before the approved
    // first call runs: the state holds its message first.
    let agent = agent(email_then_delete(), ReviewMode::Batched);
    let reviewer = ScriptedReviewer::new()
        .approve::<send_email>()
        .reject::<delete_file>("no");
    let t = run_with_reviewer(&agent, "go", &RunConfig::thread("order"), &reviewer)
        .await
        .unwrap();
    let state_order: Vec<&str> = t
        .messages()
        .iter()
        .filter_map(|m| m.as_tool())
        .map(|m| m.tool_call_id.as_str())
        .collect();
    assert_eq!(state_order, ["d1", "e1"]);
    let text = t.to_string();
    for line in text.lines() {
        assert_eq!(line, line.trim_end(), "trailing whitespace in {line:?}");
    }
    insta::assert_snapshot!(text, @r#"
    user: go
    ai:
      call send_email {"to":"a"}
      call delete_file {"path":"x.txt"}
    review (2 calls):
      send_email {"to":"a"} ["approve","edit","reject"]
        Tool execution requires approval

        Tool: send_email
        Args: {'to': 'a'}
      delete_file {"path":"x.txt"} ["reject","approve"]
        Delete x.txt?
    decisions: approve send_email; reject delete_file: no
    tool send_email: sent to a
    tool delete_file (error): User rejected the tool call for `delete_file` with reason: no
    ai: ok
    "#);
}

#[tokio::test]
async fn a_recorded_run_replays_offline_with_the_same_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow.json");
    let turns = vec![
        calls(vec![
            ToolCall::of(SendEmailArgs { to: "a".into() }, "e1"),
            ToolCall::of(
                TransferArgs {
                    amount: 5000.0,
                    to: "bob".into(),
                },
                "t1",
            ),
        ]),
        Message::assistant("All done."),
    ];

    // Record: the "real" model here is a scripted one; any ChatModel records the same.
    let recorder = Recorder::new();
    let live = create_agent(recorder.model(ScriptedModel::turns(turns)))
        .tools(tools![transfer, send_email, delete_file])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let reviewer = recorder.reviewer(
        ScriptedReviewer::new()
            .edit(SendEmailArgs { to: "b".into() })
            .answer_with(|_: LargeTransfer| TransferDecision { approved: true }),
    );
    let recorded = run_with_reviewer(&live, "go", &RunConfig::thread("rec"), &reviewer)
        .await
        .unwrap();
    recorder.save(&path).unwrap();

    // Replay from the file alone.
    let fixture = hitl_runtime::testing::Fixture::load(&path).unwrap();
    assert_eq!(fixture.turns.len(), 2);
    assert_eq!(fixture.answers.len(), 2);
    assert_eq!(
        fixture.answers[0].interrupt.as_deref(),
        Some("hitl.batched")
    );
    let offline = || {
        create_agent(fixture.model())
            .tools(tools![transfer, send_email, delete_file])
            .middleware(HumanInTheLoop::from_tools())
            .checkpointer(InMemorySaver::new())
            .build()
            .unwrap()
    };
    let replayed = run_with_reviewer(
        &offline(),
        "go",
        &RunConfig::thread("replay"),
        &fixture.reviewer(),
    )
    .await
    .unwrap();
    assert_eq!(replayed.to_string(), recorded.to_string());
    assert!(
        replayed
            .to_string()
            .contains("edit send_email -> {\"to\":\"b\"}")
    );

    // A run that pauses elsewhere than the recording is reported, not answered.
    let mut swapped = fixture.clone();
    swapped.answers.swap(0, 1);
    let err = run_with_reviewer(
        &offline(),
        "go",
        &RunConfig::thread("diverged"),
        &swapped.reviewer(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FlowError::Diverged { .. }),
        "expected Diverged, got {err}"
    );
    assert!(
        err.to_string().contains(
            "the recorded answer was given to a `LargeTransfer` interrupt, this run paused at a `hitl.batched` interrupt"
        ),
        "{err}"
    );

    // A file that is not a fixture is an error naming it.
    std::fs::write(&path, "{\"turns\": 3}").unwrap();
    let err = hitl_runtime::testing::Fixture::load(&path).unwrap_err();
    assert!(err.to_string().contains("is not a hitl fixture"), "{err}");
}

/// The README's transfer-threshold test, as written there (the README compiles it but
/// does not run it).
mod readme {
    use hitl_runtime::agent::create_agent;
    use hitl_runtime::testing::{ScriptedModel, ScriptedReviewer, run_with_reviewer};
    use hitl_runtime::{
        InMemorySaver, Interrupt, Message, RunConfig, ToolCall, ToolContext, ToolError, tool, tools,
    };
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct TransferDecision {
        approved: bool,
    }

    #[derive(Serialize, Deserialize, Interrupt)]
    #[interrupt(resume = TransferDecision)]
    struct LargeTransfer {
        amount: f64,
        to: String,
    }

    /// Transfer money; over 1000 a human decides.
    #[tool]
    async fn transfer(cx: ToolContext, amount: f64, to: String) -> Result<String, ToolError> {
        if amount > 1000.0
            && !cx
                .interrupt(LargeTransfer {
                    amount,
                    to: to.clone(),
                })
                .await?
                .approved
        {
            return Ok(format!("Transfer to {to} cancelled by the reviewer"));
        }
        Ok(format!("Transferred {amount} to {to}"))
    }

    #[tokio::test]
    async fn large_transfers_ask_a_human() {
        let model = ScriptedModel::turns([
            Message::assistant_with_tools(
                "",
                vec![
                    ToolCall::of(
                        TransferArgs {
                            amount: 250.0,
                            to: "alice".into(),
                        },
                        "t1",
                    ),
                    ToolCall::of(
                        TransferArgs {
                            amount: 20000.0,
                            to: "eve".into(),
                        },
                        "t2",
                    ),
                ],
            ),
            Message::assistant("Paid alice; eve's transfer was cancelled."),
        ]);
        let agent = create_agent(model)
            .tools(tools![transfer])
            .checkpointer(InMemorySaver::new())
            .build()
            .unwrap();
        let reviewer = ScriptedReviewer::new().answer_with(|t: LargeTransfer| TransferDecision {
            approved: t.amount < 10_000.0,
        });
        let transcript = run_with_reviewer(&agent, "pay", &RunConfig::thread("t"), &reviewer)
            .await
            .unwrap();
        insta::assert_snapshot!(transcript, @r#"
        user: pay
        ai:
          call transfer {"amount":250.0,"to":"alice"}
          call transfer {"amount":20000.0,"to":"eve"}
        tool transfer: Transferred 250 to alice
        interrupt LargeTransfer at tools: {"amount":20000.0,"to":"eve"}
        decisions: answer LargeTransfer: {"approved":false}
        tool transfer: Transfer to eve cancelled by the reviewer
        ai: Paid alice; eve's transfer was cancelled.
        "#);
    }
}

/// Agent Inbox answers a review with its older `HumanResponse` list (the shapes its
/// `ThreadContext.tsx` sends); hitl translates it per policy before checking and
/// storing it.
#[tokio::test]
async fn agent_inbox_human_responses_answer_a_review() {
    let turns = email_then_delete;
    // An edit of the email and a text response to the deletion (the policy allows
    // reject, so the text rejects it).
    let agent1 = agent(turns(), ReviewMode::Batched);
    let cfg = RunConfig::thread("inbox");
    agent1.invoke(Message::user("go"), &cfg).await.unwrap();
    let out = agent1
        .invoke(
            Command::resume(json!([
                {"type": "edit", "args": {"action": "send_email", "args": {"to": "b"}}},
                {"type": "response", "args": "keep it"},
            ])),
            &cfg,
        )
        .await
        .unwrap();
    assert!(!out.is_interrupted());
    let texts: Vec<String> = out.values.messages.iter().map(Message::text).collect();
    assert!(texts.iter().any(|t| t.ends_with("sent to b")), "{texts:?}");
    assert!(
        texts.contains(
            &"User rejected the tool call for `delete_file` with reason: keep it".to_owned()
        ),
        "{texts:?}"
    );

    // `accept` for both; and a translated decision the policy does not allow is
    // refused like any other, leaving the review pending.
    let agent2 = agent(turns(), ReviewMode::Batched);
    let cfg = RunConfig::thread("inbox-2");
    let paused = agent2.invoke(Message::user("go"), &cfg).await.unwrap();
    let err = agent2
        .invoke(
            Command::resume(json!([
                {"type": "accept", "args": null},
                {"type": "edit", "args": {"action": "delete_file", "args": {"path": "y"}}},
            ])),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("edit"), "{err}");
    let state = agent2.get_state(&cfg).await.unwrap();
    assert_eq!(state.interrupts[0].id, paused.interrupts[0].id);
    let out = agent2
        .invoke(
            Command::resume(json!([
                {"type": "accept", "args": null},
                {"type": "accept", "args": null},
            ])),
            &cfg,
        )
        .await
        .unwrap();
    let texts: Vec<String> = out.values.messages.iter().map(Message::text).collect();
    assert!(texts.contains(&"deleted x.txt".to_owned()), "{texts:?}");
}
