//! Agents with `HumanInTheLoopMiddleware`, end to end: the reference scenarios
//! (Part C 1-37) under our strict rules, and the seeds' examples.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use hitl_runtime::agent::{Agent, HumanInTheLoop, ReviewMode, create_agent};
use hitl_runtime::checkpoint::WriteKind;
use hitl_runtime::testing::{ScriptedModel, ScriptedReviewer, run_with_reviewer};
use hitl_runtime::{
    Command, Decision, DecisionType, InMemorySaver, Interrupt, InterruptPolicy, Message, PolicyMap,
    ResumeError, RunConfig, RunError, StreamEvent, StreamMode, ToolCall, ToolContext, ToolError,
    interrupt_on, tool, tools,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the tools of one test ran, passed as run context.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ran(pub Arc<Mutex<Vec<String>>>);

impl Ran {
    pub(crate) fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn record(cx: &ToolContext, what: String) {
    if let Some(ran) = cx.context::<Ran>() {
        ran.0.lock().unwrap().push(what);
    }
}

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject]))]
pub(crate) async fn send_email(
    cx: ToolContext,
    to: String,
    body: String,
) -> Result<String, ToolError> {
    record(&cx, format!("send_email to={to}"));
    Ok(format!("sent to {to}: {body}"))
}

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject], description = "Deleting {path} cannot be undone"))]
pub(crate) async fn delete_file(cx: ToolContext, path: String) -> Result<String, ToolError> {
    record(&cx, format!("delete_file {path}"));
    Ok(format!("deleted {path}"))
}

/// Read a file.
#[tool]
pub(crate) async fn read_file(cx: ToolContext, path: String) -> Result<String, ToolError> {
    record(&cx, format!("read_file {path}"));
    Ok(format!("contents of {path}"))
}

/// Ask the user a question.
#[tool(interrupt(allowed = [respond]))]
pub(crate) async fn ask_user(cx: ToolContext, question: String) -> Result<String, ToolError> {
    record(&cx, format!("ask_user {question}"));
    Ok("the tool itself never answers".into())
}

pub(crate) fn call(name: &str, args: Value, id: &str) -> ToolCall {
    ToolCall::new(name, args, id)
}

pub(crate) fn turn(calls: Vec<ToolCall>) -> Message {
    Message::assistant_with_tools("", calls)
}

pub(crate) fn agent_with(model: ScriptedModel, hitl: HumanInTheLoop) -> Agent {
    create_agent(model)
        .tools(tools![send_email, delete_file, read_file, ask_user])
        .middleware(hitl)
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

pub(crate) fn agent(model: ScriptedModel) -> Agent {
    agent_with(model, HumanInTheLoop::from_tools())
}

fn cfg(thread: &str, ran: &Ran) -> RunConfig {
    RunConfig::thread(thread).context(ran.clone())
}

fn email(to: &str) -> Value {
    json!({"to": to, "body": "hi"})
}

#[tokio::test]
async fn a_model_turn_without_tool_calls_ends_the_run() {
    let agent = agent(ScriptedModel::turns([Message::assistant("Hello!")]));
    let ran = Ran::default();
    let out = agent
        .invoke(Message::user("hi"), &cfg("plain", &ran))
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(out.values.messages.len(), 2);
    assert!(ran.list().is_empty());
}

#[tokio::test]
async fn ungated_calls_run_without_review() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("read_file", json!({"path": "a"}), "c1")]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let out = agent
        .invoke(Message::user("read"), &cfg("ungated", &ran))
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["read_file a"]);
}

#[tokio::test]
async fn approve_runs_the_call_as_the_model_wrote_it() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("send_email", email("alice"), "c1")]),
        Message::assistant("Sent."),
    ]));
    let ran = Ran::default();
    let reviewer = ScriptedReviewer::new().approve::<send_email>();
    let t = run_with_reviewer(&agent, "mail alice", &cfg("approve", &ran), &reviewer)
        .await
        .unwrap();
    assert_eq!(ran.list(), ["send_email to=alice"]);
    let tool = t.messages()[2].as_tool().unwrap();
    assert_eq!(
        tool.content.text(),
        "sent to alice: hi",
        "no notice on an approved call"
    );
    insta::assert_snapshot!(t.to_string(), @r#"
    user: mail alice
    ai:
      call send_email {"body":"hi","to":"alice"}
    review (1 call):
      send_email {"body":"hi","to":"alice"} ["approve","edit","reject"]
        Tool execution requires approval

        Tool: send_email
        Args: {'body': 'hi', 'to': 'alice'}
    decisions: approve send_email
    tool send_email: sent to alice: hi
    ai: Sent.
    "#);
}

#[tokio::test]
async fn edit_runs_the_reviewers_args_keeps_the_models_call_and_says_so() {
    let model = ScriptedModel::turns([
        turn(vec![call("send_email", email("alice"), "c1")]),
        Message::assistant("Sent."),
    ]);
    let agent = agent(model.clone());
    let ran = Ran::default();
    let reviewer = ScriptedReviewer::new().edit(SendEmailArgs {
        to: "bob".into(),
        body: "hello".into(),
    });
    let t = run_with_reviewer(&agent, "mail alice", &cfg("edit", &ran), &reviewer)
        .await
        .unwrap();
    assert_eq!(ran.list(), ["send_email to=bob"]);
    let ai = t.messages()[1].as_assistant().unwrap();
    assert_eq!(
        ai.tool_calls[0].args,
        email("alice"),
        "the model's call is kept"
    );
    let tool = t.messages()[2].as_tool().unwrap();
    let text = tool.content.text();
    // LangChain's text, word for word, with the arguments as `json.dumps` writes them.
    assert_eq!(
        text,
        "Note: a human reviewer replaced this tool call before it ran. The call recorded in \
         your message is the one you produced, not the one that executed. This was \
         intentional and authorized. Do not re-issue your original call. Executed instead: \
         send_email with arguments {\"body\": \"hello\", \"to\": \"bob\"}.\n\nTool \
         response:\nsent to bob: hello"
    );
    assert!(text.starts_with(hitl_runtime::agent::DEFAULT_EDIT_NOTICE));
    assert!(!text.contains("alice"), "the original args are not echoed");
    // The model saw the annotated result on its next turn.
    assert_eq!(model.requests().last().unwrap()[2], t.messages()[2]);
}

#[tokio::test]
async fn reject_answers_the_call_with_an_error_the_model_sees() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("delete_file", json!({"path": "db"}), "c1")]),
        Message::assistant("OK, I will not delete it."),
    ]));
    let ran = Ran::default();
    let reviewer =
        ScriptedReviewer::new().reject::<delete_file>("Cannot delete records without backup.");
    let t = run_with_reviewer(&agent, "drop the db", &cfg("reject", &ran), &reviewer)
        .await
        .unwrap();
    assert!(ran.list().is_empty(), "a rejected call never runs");
    insta::assert_snapshot!(t.to_string(), @r#"
    user: drop the db
    ai:
      call delete_file {"path":"db"}
    review (1 call):
      delete_file {"path":"db"} ["approve","reject"]
        Deleting db cannot be undone
    decisions: reject delete_file: Cannot delete records without backup.
    tool delete_file (error): User rejected the tool call for `delete_file` with reason: Cannot delete records without backup.
    ai: OK, I will not delete it.
    "#);
}

#[tokio::test]
async fn reject_without_a_message_uses_the_default_text() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("delete_file", json!({"path": "db"}), "c9")]),
        Message::assistant("ok"),
    ]));
    let reviewer = ScriptedReviewer::new().reject::<delete_file>("");
    let t = run_with_reviewer(
        &agent,
        "x",
        &cfg("reject-default", &Ran::default()),
        &reviewer,
    )
    .await
    .unwrap();
    let tool = t.messages()[2].as_tool().unwrap();
    assert_eq!(tool.tool_call_id, "c9");
    assert_eq!(tool.name.as_deref(), Some("delete_file"));
    assert_eq!(tool.status, hitl_runtime::message::ToolStatus::Error);
    assert_eq!(
        tool.content.text(),
        "User rejected the tool call for `delete_file` with id c9. The tool was not executed. \
         Do not retry this tool call unless the user explicitly requests it."
    );
}

#[tokio::test]
async fn respond_answers_in_place_of_the_tool() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call(
            "ask_user",
            json!({"question": "favourite colour?"}),
            "c1",
        )]),
        Message::assistant("Blue it is."),
    ]));
    let ran = Ran::default();
    let reviewer = ScriptedReviewer::new().respond::<ask_user>("blue");
    let t = run_with_reviewer(&agent, "x", &cfg("respond", &ran), &reviewer)
        .await
        .unwrap();
    assert!(ran.list().is_empty());
    let tool = t.messages()[2].as_tool().unwrap();
    assert_eq!(
        (tool.content.text().as_str(), tool.status),
        ("blue", hitl_runtime::message::ToolStatus::Success)
    );
}

/// Invokes until the review and returns the pending interrupt's id.
async fn pause(agent: &Agent, cfg: &RunConfig) -> hitl_runtime::InterruptId {
    let out = agent.invoke(Message::user("go"), cfg).await.unwrap();
    assert!(out.is_interrupted(), "{out:?}");
    assert_eq!(out.interrupts.len(), 1);
    out.interrupts[0].id
}

async fn expect_rejected(agent: &Agent, cfg: &RunConfig, resume: Value, expected: &str) {
    let before = agent.get_state(cfg).await.unwrap();
    let err = agent
        .invoke(Command::resume(resume.clone()), cfg)
        .await
        .unwrap_err();
    let RunError::Resume(ResumeError::InvalidValue { problems, .. }) = &err else {
        panic!("{resume}: expected an invalid-value error, got {err}");
    };
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "{resume}: {problems:#?} does not mention {expected:?}"
    );
    let after = agent.get_state(cfg).await.unwrap();
    assert_eq!(after.checkpoint_id, before.checkpoint_id);
    assert_eq!(
        after.interrupts, before.interrupts,
        "the same interrupt is still pending"
    );
    let thread = cfg.thread_id().unwrap();
    let head = agent
        .checkpointer()
        .unwrap()
        .get(thread, "", None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        head.writes.iter().all(|w| w.kind != WriteKind::Resume),
        "nothing stored"
    );
}

#[tokio::test]
async fn every_bad_resume_is_rejected_before_anything_is_stored() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![
            call("send_email", email("alice"), "c1"),
            call("delete_file", json!({"path": "x"}), "c2"),
        ]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let cfg = cfg("strict", &ran);
    pause(&agent, &cfg).await;
    let cases = [
        (json!("yes"), "expected {\"decisions\": [..]}"),
        (json!({"decision": []}), "missing `decisions`"),
        (
            json!({"decisions": []}),
            "0 decisions for 2 action requests",
        ),
        (
            json!({"decisions": [{"type": "approve"}]}),
            "1 decision for 2 action requests",
        ),
        (
            json!({"decisions": [{"type": "approve"}, {"type": "approve"}, {"type": "approve"}]}),
            "3 decisions for 2 action requests",
        ),
        (
            json!({"decisions": [{"type": "respond", "message": "x"}, {"type": "approve"}]}),
            "`respond` is not allowed for this tool; allowed: `approve`, `edit`, `reject`",
        ),
        (
            json!({"decisions": [{"type": "unknown"}, {"type": "approve"}]}),
            "unknown decision type `unknown`",
        ),
        (
            json!({"decisions": [{"type": "approve"}, {"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "y"}}}]}),
            "decision 1 (`delete_file`): `edit` is not allowed for this tool; allowed: `approve`, `reject`",
        ),
        (
            json!({"decisions": [{"type": "edit"}, {"type": "approve"}]}),
            "an edit needs `edited_action`",
        ),
        (
            json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"too": 1}}}, {"type": "approve"}]}),
            "the edited arguments do not match the tool's schema",
        ),
        (
            json!({"decisions": [{"type": "edit", "edited_action": {"name": "read_file", "args": {"path": "a"}}}, {"type": "approve"}]}),
            "an edit may not switch tools: `send_email` was edited to `read_file`",
        ),
    ];
    for (resume, expected) in cases {
        expect_rejected(&agent, &cfg, resume, expected).await;
    }
    assert!(
        ran.list().is_empty(),
        "no tool ran during the rejected resumes"
    );
    // A correct resume then works, once.
    let out = agent
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}, {"type": "reject"}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["send_email to=alice"]);
}

#[tokio::test]
async fn mixed_calls_one_review_in_call_order_and_the_reference_history_order() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![
            call("send_email", email("alice"), "c1"),
            call("read_file", json!({"path": "notes"}), "c2"),
            call("delete_file", json!({"path": "old"}), "c3"),
        ]),
        Message::assistant("All done."),
    ]));
    let ran = Ran::default();
    let cfg = cfg("mixed", &ran);
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    assert_eq!(out.next, ["HumanInTheLoopMiddleware.after_model"]);
    assert!(
        ran.list().is_empty(),
        "auto-approved calls wait for the review"
    );
    let value = &out.interrupts[0].value;
    let names: Vec<&str> = value["action_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["send_email", "delete_file"]);
    insta::assert_json_snapshot!("hitl_request_wire_format", value);

    let out = agent
        .invoke(
            Command::resume(
                json!({"decisions": [{"type": "approve"}, {"type": "reject", "message": "no"}]}),
            ),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    let history: Vec<String> = out
        .values
        .messages
        .iter()
        .map(|m| match m {
            Message::Tool(t) => format!("tool {} {:?}", t.tool_call_id, t.status),
            other => other.kind().to_string(),
        })
        .collect();
    assert_eq!(
        history,
        [
            "human",
            "ai",
            "tool c3 Error",
            "tool c1 Success",
            "tool c2 Success",
            "ai"
        ]
    );
    let mut runs = ran.list();
    runs.sort();
    assert_eq!(runs, ["read_file notes", "send_email to=alice"]);
}

#[tokio::test]
async fn five_calls_two_gated_keep_their_order() {
    let calls = vec![
        call("read_file", json!({"path": "a"}), "A"),
        call("send_email", email("b"), "B"),
        call("read_file", json!({"path": "c"}), "C"),
        call("delete_file", json!({"path": "d"}), "D"),
        call("read_file", json!({"path": "e"}), "E"),
    ];
    let agent = agent(ScriptedModel::turns([
        turn(calls.clone()),
        Message::assistant("ok"),
    ]));
    let reviewer = ScriptedReviewer::new()
        .approve::<send_email>()
        .reject::<delete_file>("no");
    let t = run_with_reviewer(&agent, "x", &cfg("five", &Ran::default()), &reviewer)
        .await
        .unwrap();
    let ai = t.messages()[1].as_assistant().unwrap();
    assert_eq!(
        ai.tool_calls, calls,
        "the model's calls are untouched and in order"
    );
    let answered: Vec<&str> = t.messages()[2..7]
        .iter()
        .map(|m| m.as_tool().unwrap().tool_call_id.as_str())
        .collect();
    assert_eq!(answered, ["D", "A", "B", "C", "E"]);
}

#[tokio::test]
async fn the_only_gated_call_rejected_skips_the_tools_and_asks_the_model_again() {
    let model = ScriptedModel::turns([
        turn(vec![call("delete_file", json!({"path": "x"}), "c1")]),
        Message::assistant("Understood."),
    ]);
    let agent = agent(model.clone());
    let ran = Ran::default();
    let cfg = cfg("skip-tools", &ran);
    pause(&agent, &cfg).await;
    let mut stream = agent.stream(
        Command::resume(json!({"decisions": [{"type": "reject"}]})),
        &cfg,
        StreamMode::Tasks,
    );
    let mut nodes = Vec::new();
    while let Some(event) = stream.next().await {
        if let StreamEvent::TaskStart { node, .. } = event.unwrap() {
            nodes.push(node);
        }
    }
    assert_eq!(
        nodes,
        [
            "HumanInTheLoopMiddleware.after_model",
            "model",
            "HumanInTheLoopMiddleware.after_model"
        ]
    );
    assert_eq!(model.requests().len(), 2);
    assert!(ran.list().is_empty());
}

#[tokio::test]
async fn interrupt_on_overrides_attribute_policies() {
    let model = || {
        ScriptedModel::turns([
            turn(vec![
                call("read_file", json!({"path": "a"}), "c1"),
                call("send_email", email("z"), "c2"),
            ]),
            Message::assistant("ok"),
        ])
    };
    // read_file becomes reviewed (every decision), send_email is not reviewed.
    let agent = agent_with(
        model(),
        HumanInTheLoop::new(interrupt_on! { read_file: true, send_email: false }),
    );
    let ran = Ran::default();
    let cfg = cfg("override", &ran);
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let v = &out.interrupts[0].value;
    assert_eq!(v["action_requests"].as_array().unwrap().len(), 1);
    assert_eq!(v["action_requests"][0]["name"], "read_file");
    assert_eq!(
        v["review_configs"][0]["allowed_decisions"],
        json!(["approve", "edit", "reject", "respond"])
    );
    let out = agent
        .invoke(
            Command::resume(json!({"decisions": [{"type": "respond", "message": "forget it"}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["send_email to=z"]);

    // A map naming a tool the agent does not have is a build error.
    let err = create_agent(model())
        .tools(tools![read_file])
        .middleware(HumanInTheLoop::new(interrupt_on! { send_email: true }))
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`send_email`, which is not a tool of this agent"),
        "{err}"
    );
}

#[tokio::test]
async fn when_gates_only_some_calls_and_descriptions_can_be_custom() {
    let policies = PolicyMap::new()
        .set::<send_email>(Some(
            InterruptPolicy::allowing([DecisionType::Approve, DecisionType::Reject])
                .when(|args| Some(args.get("to")? != "me"))
                .describe_with(|args| Some(format!("Email {}?", args.get("to")?))),
        ))
        .set::<delete_file>(None);
    let agent = agent_with(
        ScriptedModel::turns([
            turn(vec![
                call("send_email", email("me"), "c1"),
                call("send_email", email("boss"), "c2"),
                call("delete_file", json!({"path": "x"}), "c3"),
            ]),
            Message::assistant("ok"),
        ]),
        HumanInTheLoop::new(policies).description_prefix("Custom prefix"),
    );
    let ran = Ran::default();
    let cfg = cfg("when", &ran);
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let requests = out.interrupts[0].value["action_requests"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(requests.len(), 1, "only the email to the boss is reviewed");
    assert_eq!(requests[0]["description"], "Email \"boss\"?");
    agent
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}]})),
            &cfg,
        )
        .await
        .unwrap();
    let mut runs = ran.list();
    runs.sort();
    assert_eq!(
        runs,
        ["delete_file x", "send_email to=boss", "send_email to=me"]
    );
}

#[tokio::test]
async fn the_default_description_has_the_prefix_tool_and_args() {
    let agent = agent_with(
        ScriptedModel::turns([
            turn(vec![call("send_email", email("a"), "c1")]),
            Message::assistant("ok"),
        ]),
        HumanInTheLoop::from_tools().description_prefix("Custom prefix"),
    );
    let out = agent
        .invoke(Message::user("go"), &cfg("prefix", &Ran::default()))
        .await
        .unwrap();
    assert_eq!(
        out.interrupts[0].value["action_requests"][0]["description"],
        // LangChain's default: the arguments as Python prints the dict.
        "Custom prefix\n\nTool: send_email\nArgs: {'body': 'hi', 'to': 'a'}"
    );
}

#[tokio::test]
async fn an_edit_is_forgotten_before_the_next_turn_reuses_its_call_id() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("send_email", email("alice"), "1")]),
        turn(vec![call("read_file", json!({"path": "x"}), "1")]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let reviewer = ScriptedReviewer::new().edit(SendEmailArgs {
        to: "bob".into(),
        body: "b".into(),
    });
    let t = run_with_reviewer(&agent, "go", &cfg("reuse-id", &ran), &reviewer)
        .await
        .unwrap();
    assert_eq!(ran.list(), ["send_email to=bob", "read_file x"]);
    let second = t.messages()[4].as_tool().unwrap();
    assert_eq!(
        second.content.text(),
        "contents of x",
        "no notice on the unrelated call"
    );
    // The second call got its own id: the recorded edit cannot apply to it.
    let state = agent.get_state(&cfg("reuse-id", &ran)).await.unwrap();
    let edited: Vec<&String> = state.values.reviewed_tool_calls.keys().collect();
    assert_eq!(edited, ["1"]);
    assert_ne!(second.tool_call_id, "1");
}

#[tokio::test]
async fn a_recorded_edit_still_runs_after_the_policy_is_tightened() {
    let saver = InMemorySaver::new();
    let build = |policies: PolicyMap| {
        create_agent(ScriptedModel::turns([
            turn(vec![call("send_email", email("alice"), "c1")]),
            Message::assistant("ok"),
        ]))
        .tools(tools![send_email])
        .middleware(HumanInTheLoop::new(policies))
        .checkpointer(saver.clone())
        .interrupt_before(["tools"])
        .build()
        .unwrap()
    };
    let loose = build(interrupt_on! { send_email: [approve, edit] });
    let ran = Ran::default();
    let cfg = cfg("tightened", &ran);
    loose.invoke(Message::user("go"), &cfg).await.unwrap();
    let out = loose
        .invoke(
            Command::resume(json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob", "body": "b"}}}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert_eq!(
        out.next,
        ["tools"],
        "stopped at the breakpoint with the edit recorded"
    );
    let strict = build(interrupt_on! { send_email: [approve] });
    let out = strict.invoke(None, &cfg).await.unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["send_email to=bob"]);
}

#[tokio::test]
async fn edit_notice_can_be_changed_or_turned_off() {
    for (notice, expected) in [
        (
            Some("EDITED.".to_string()),
            "EDITED. Executed instead: send_email with arguments {\"body\": \"b\", \"to\": \"bob\"}.\n\nTool response:\nsent to bob: b",
        ),
        (None, "sent to bob: b"),
    ] {
        let agent = agent_with(
            ScriptedModel::turns([
                turn(vec![call("send_email", email("alice"), "c1")]),
                Message::assistant("ok"),
            ]),
            HumanInTheLoop::from_tools().edit_notice(notice),
        );
        let reviewer = ScriptedReviewer::new().edit(SendEmailArgs {
            to: "bob".into(),
            body: "b".into(),
        });
        let t = run_with_reviewer(&agent, "go", &cfg("notice", &Ran::default()), &reviewer)
            .await
            .unwrap();
        assert_eq!(t.messages()[2].text(), expected);
    }
}

#[tokio::test]
async fn streaming_updates_until_the_interrupt_then_resuming() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("delete_file", json!({"path": "x"}), "c1")]),
        Message::assistant("Deleted."),
    ]));
    let cfg = cfg("stream", &Ran::default());
    let modes = StreamMode::Updates | StreamMode::Messages;
    let mut stream = agent.stream(Message::user("delete x"), &cfg, modes);
    let mut seen = Vec::new();
    let mut interrupt = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Update { node, .. } => seen.push(format!("update {node}")),
            StreamEvent::Message { chunk, .. } if !chunk.tool_call_chunks.is_empty() => {
                seen.push("tool call chunk".into());
            }
            StreamEvent::Interrupt { interrupts } => {
                interrupt = Some(interrupts);
                break;
            }
            _ => {}
        }
    }
    seen.dedup();
    assert_eq!(seen, ["tool call chunk", "update model"]);
    assert_eq!(
        interrupt.unwrap()[0].value["action_requests"][0]["name"],
        "delete_file"
    );
    drop(stream);
    let mut resumed = agent.stream(
        Command::resume(json!({"decisions": [{"type": "approve"}]})),
        &cfg,
        modes,
    );
    let mut updates = Vec::new();
    let mut text = String::new();
    while let Some(event) = resumed.next().await {
        match event.unwrap() {
            StreamEvent::Update { node, .. } => updates.push(node),
            StreamEvent::Message { chunk, .. } => text.push_str(&chunk.content),
            _ => {}
        }
    }
    assert_eq!(
        updates,
        [
            "HumanInTheLoopMiddleware.after_model",
            "tools",
            "model",
            "HumanInTheLoopMiddleware.after_model"
        ]
    );
    assert_eq!(text, "Deleted.");
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct TransferDecision {
    approved: bool,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
pub(crate) struct LargeTransfer {
    amount: f64,
    to: String,
}

/// Transfer money; transfers over 1000 ask a human.
#[tool]
pub(crate) async fn transfer_money(
    cx: ToolContext,
    amount: f64,
    to: String,
) -> Result<String, ToolError> {
    if amount > 1000.0 {
        let d = cx
            .interrupt(LargeTransfer {
                amount,
                to: to.clone(),
            })
            .await?;
        if !d.approved {
            return Ok("Transaction cancelled by user".into());
        }
    }
    record(&cx, format!("transfer {amount} {to}"));
    Ok(format!("Transferred ${amount} to {to}"))
}

#[tokio::test]
async fn a_custom_interrupt_over_a_threshold_asks_with_a_typed_payload_and_answer() {
    let agent = create_agent(ScriptedModel::turns([
        turn(vec![
            call(
                "transfer_money",
                json!({"amount": 50.0, "to": "alice"}),
                "small",
            ),
            call(
                "transfer_money",
                json!({"amount": 5000.0, "to": "bob"}),
                "big",
            ),
        ]),
        Message::assistant("done"),
    ]))
    .tools(tools![transfer_money])
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap();
    let ran = Ran::default();
    let cfg = cfg("threshold", &ran);
    let out = agent.invoke(Message::user("pay"), &cfg).await.unwrap();
    assert_eq!(
        ran.list(),
        ["transfer 50 alice"],
        "the small transfer ran at once"
    );
    let pending = &out.interrupts[0];
    assert_eq!(pending.value, json!({"amount": 5000.0, "to": "bob"}));
    assert_eq!(
        pending.resume_schema.as_ref().unwrap()["properties"]["approved"]["type"],
        "boolean"
    );
    let err = agent
        .invoke(Command::resume(json!({"approved": "yes"})), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunError::Resume(ResumeError::InvalidValue { .. })),
        "{err}"
    );
    let out = agent
        .invoke(Command::resume(json!({"approved": true})), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(
        ran.list(),
        ["transfer 50 alice", "transfer 5000 bob"],
        "nothing ran twice"
    );
    let last_tool = out.values.messages[3].as_tool().unwrap();
    assert_eq!(last_tool.content.text(), "Transferred $5000 to bob");
}

#[tokio::test]
async fn the_idempotency_key_is_stable_across_re_runs() {
    /// Records its idempotency key, then asks a human.
    #[tool]
    async fn careful(cx: ToolContext) -> Result<String, ToolError> {
        record(&cx, cx.idempotency_key());
        let _: Value = cx.interrupt(json!("sure?")).await?;
        Ok("ok".into())
    }
    let agent = create_agent(ScriptedModel::turns([
        turn(vec![call("careful", json!({}), "k1")]),
        Message::assistant("done"),
    ]))
    .tools(tools![careful])
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap();
    let ran = Ran::default();
    let cfg = cfg("key", &ran);
    agent.invoke(Message::user("go"), &cfg).await.unwrap();
    agent
        .invoke(Command::resume(json!("yes")), &cfg)
        .await
        .unwrap();
    let keys = ran.list();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    assert!(
        keys[0].starts_with("key/") && keys[0].ends_with("/k1"),
        "{}",
        keys[0]
    );
}

#[tokio::test]
async fn async_invocation_seed_and_typed_decisions_resume() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call("send_email", email("alice"), "c1")]),
        Message::assistant("done"),
    ]));
    let cfg = cfg("typed", &Ran::default());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    assert!(out.is_interrupted());
    let decisions =
        hitl_runtime::HitlResponse::from([Decision::edit::<send_email>(SendEmailArgs {
            to: "carol".into(),
            body: "hey".into(),
        })]);
    let out = agent
        .invoke(Command::resume(decisions), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert!(
        out.values.messages[2]
            .text()
            .ends_with("sent to carol: hey")
    );
}

#[tokio::test]
async fn per_call_mode_has_the_same_texts() {
    let agent = agent_with(
        ScriptedModel::turns([
            turn(vec![call("delete_file", json!({"path": "x"}), "c1")]),
            Message::assistant("ok"),
        ]),
        HumanInTheLoop::from_tools().mode(ReviewMode::PerCall),
    );
    let reviewer = ScriptedReviewer::new().reject::<delete_file>("not now");
    let t = run_with_reviewer(
        &agent,
        "go",
        &cfg("per-call-text", &Ran::default()),
        &reviewer,
    )
    .await
    .unwrap();
    assert_eq!(
        t.messages()[2].text(),
        "User rejected the tool call for `delete_file` with reason: not now"
    );
}

#[tokio::test]
async fn the_review_schema_is_derived_from_the_stored_request_not_stored_with_it() {
    let saver = InMemorySaver::new();
    let build = || {
        create_agent(ScriptedModel::turns([
            turn(vec![
                call("send_email", email("alice"), "c1"),
                call("delete_file", json!({"path": "a"}), "c2"),
            ]),
            Message::assistant("Done."),
        ]))
        .tools(tools![send_email, delete_file, read_file, ask_user])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(saver.clone())
        .build()
        .unwrap()
    };
    let ran = Ran::default();
    let cfg = cfg("derived", &ran);
    let out = build().invoke(Message::user("go"), &cfg).await.unwrap();
    let published = out.interrupts[0].resume_schema.clone().unwrap();
    assert_eq!(
        published["properties"]["decisions"]["maxItems"], 2,
        "one decision per reviewed call"
    );
    // The stored record leaves the schema out...
    let stored = hitl_runtime::Checkpointer::get(&saver, "derived", "", None, None)
        .await
        .unwrap()
        .unwrap();
    let record = stored
        .writes
        .iter()
        .find(|w| w.kind == WriteKind::Interrupt)
        .unwrap();
    assert!(!record.value.get().contains("resume_schema"));
    // ...and whoever reads it (here a new agent on the same storage) gets it back.
    let fresh = build();
    let state = fresh.get_state(&cfg).await.unwrap();
    assert_eq!(
        state.interrupts[0].resume_schema.as_deref(),
        Some(&*published)
    );
    // The derived schema's rules still hold: two decisions, in order, allowed ones.
    let err = fresh
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}]})),
            &cfg,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Resume(_)), "{err}");
    let out = fresh
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}, {"type": "reject"}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["send_email to=alice"]);
}
