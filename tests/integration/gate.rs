//! The approval gate is exact: a call runs only with a decision bound to it, or
//! because its tool is not reviewed. Duplicate ids, reused message ids, arguments only
//! a tool's own decoder rejects, deep values, and every route into the tools node.

use hitl_runtime::agent::{
    Agent, HookOutput, Hooks, HumanInTheLoop, JumpTo, Middleware, create_agent,
};
use hitl_runtime::message::ToolStatus;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    AgentState, Command, GraphError, InMemorySaver, Message, NodeContext, NodeError, ResumeError,
    RunConfig, RunError, ToolContext, ToolError, tool, tools,
};
use serde_json::{Value, json};

use crate::agent::{Ran, agent, ask_user, call, delete_file, read_file, send_email, turn};

/// Move money.
#[tool(interrupt(allowed = [approve, edit, reject]))]
async fn transfer(cx: ToolContext, amount: u32, to: String) -> Result<String, ToolError> {
    if let Some(ran) = cx.context::<Ran>() {
        ran.0
            .lock()
            .unwrap()
            .push(format!("transfer {amount} to {to}"));
    }
    Ok(format!("moved {amount} to {to}"))
}

fn cfg(thread: &str, ran: &Ran) -> RunConfig {
    RunConfig::thread(thread).context(ran.clone())
}

/// The tool messages of a state, as (call id, status, text).
fn answers(messages: &[Message]) -> Vec<(String, ToolStatus, String)> {
    messages
        .iter()
        .filter_map(Message::as_tool)
        .map(|t| (t.tool_call_id.clone(), t.status, t.content.text()))
        .collect()
}

/// The ids of the calls of the first assistant message.
fn call_ids(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .find_map(Message::as_assistant)
        .unwrap()
        .tool_calls
        .iter()
        .map(|c| c.id.clone().unwrap())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum D {
    Approve,
    Edit,
    Reject,
}

impl D {
    fn json(self, to: &str) -> Value {
        match self {
            D::Approve => json!({"type": "approve"}),
            D::Edit => {
                json!({"type": "edit", "edited_action": {"name": "send_email", "args": {"to": format!("{to}-edited"), "body": "b"}}})
            }
            D::Reject => json!({"type": "reject", "message": format!("not {to}")}),
        }
    }
}

#[tokio::test]
async fn duplicate_call_ids_in_one_turn_bind_each_decision_to_its_own_call() {
    // Every mix of decisions on two gated calls sharing an id, with an ungated call and
    // a respond-only call sharing it too.
    let all = [D::Approve, D::Edit, D::Reject];
    for first in all {
        for second in all {
            let agent = agent(ScriptedModel::turns([
                turn(vec![
                    call("send_email", json!({"to": "alice", "body": "b"}), "c1"),
                    call("read_file", json!({"path": "notes"}), "c1"),
                    call("send_email", json!({"to": "carol", "body": "b"}), "c1"),
                    call("ask_user", json!({"question": "why?"}), "c1"),
                ]),
                Message::assistant("done"),
            ]));
            let ran = Ran::default();
            let thread = format!("dup-{first:?}-{second:?}");
            let out = agent
                .invoke(Message::user("go"), &cfg(&thread, &ran))
                .await
                .unwrap();
            let ids = call_ids(&out.values.messages);
            let unique: std::collections::HashSet<&String> = ids.iter().collect();
            assert_eq!(unique.len(), 4, "every call has its own id: {ids:?}");
            assert_eq!(ids[0], "c1", "the first use of an id is kept");
            let review = &out.interrupts[0].value["action_requests"];
            assert_eq!(review.as_array().unwrap().len(), 3, "{review}");
            let decisions = json!({"decisions": [
                first.json("alice"), second.json("carol"),
                {"type": "respond", "message": "because"}
            ]});
            let out = agent
                .invoke(Command::resume(decisions), &cfg(&thread, &ran))
                .await
                .unwrap();
            assert!(out.is_done(), "{first:?} {second:?}");
            let mut expected = vec!["read_file notes".to_owned()];
            for (d, to) in [(first, "alice"), (second, "carol")] {
                match d {
                    D::Approve => expected.push(format!("send_email to={to}")),
                    D::Edit => expected.push(format!("send_email to={to}-edited")),
                    D::Reject => {}
                }
            }
            let mut got = ran.list();
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "{first:?} {second:?}");
            let answered = answers(&out.values.messages);
            assert_eq!(answered.len(), 4, "one answer per call: {answered:?}");
            for id in &ids {
                assert_eq!(
                    answered.iter().filter(|(a, _, _)| a == id).count(),
                    1,
                    "{id} answered once"
                );
            }
            let by_id = |i: usize| answered.iter().find(|(a, _, _)| *a == ids[i]).unwrap();
            assert_eq!(by_id(3).2, "because");
            for (i, d, to) in [(0, first, "alice"), (2, second, "carol")] {
                let (_, status, text) = by_id(i);
                match d {
                    D::Approve => assert_eq!(text, &format!("sent to {to}: b")),
                    D::Edit => {
                        assert!(text.ends_with(&format!("sent to {to}-edited: b")), "{text}");
                    }
                    D::Reject => {
                        assert_eq!(*status, ToolStatus::Error);
                        assert!(text.ends_with(&format!("not {to}")), "{text}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_reused_message_or_call_id_from_an_earlier_turn_gets_a_new_one() {
    let mut first = turn(vec![call("read_file", json!({"path": "a"}), "c1")]);
    let mut second = turn(vec![call("read_file", json!({"path": "b"}), "c1")]);
    if let (Message::Assistant(f), Message::Assistant(s)) = (&mut first, &mut second) {
        f.id = Some("msg-1".into());
        s.id = Some("msg-1".into());
    }
    let agent = agent(ScriptedModel::turns([
        first,
        second,
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let out = agent
        .invoke(Message::user("go"), &cfg("reuse", &ran))
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["read_file a", "read_file b"]);
    let ais: Vec<_> = out
        .values
        .messages
        .iter()
        .filter_map(Message::as_assistant)
        .collect();
    assert_eq!(ais.len(), 3, "no assistant message was replaced");
    assert_eq!(ais[0].id.as_deref(), Some("msg-1"));
    assert_ne!(ais[1].id.as_deref(), Some("msg-1"));
    let first_call = ais[0].tool_calls[0].id.clone().unwrap();
    let second_call = ais[1].tool_calls[0].id.clone().unwrap();
    assert_ne!(first_call, second_call);
    let answered = answers(&out.values.messages);
    assert_eq!(answered[0].0, first_call);
    assert_eq!(answered[1].0, second_call);
}

fn transfer_agent(model: ScriptedModel) -> Agent {
    create_agent(model)
        .tools(tools![transfer, read_file])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn arguments_the_tool_cannot_decode_are_answered_before_any_review() {
    // 4294967296 and 1.5 pass the JSON schema of a u32 (jsonschema ignores `format`),
    // but not the tool's decoder: never reviewed, never run; the model tries again.
    for (i, amount) in [json!(1.5), json!(4294967296u64), json!(-1)]
        .into_iter()
        .enumerate()
    {
        let agent = transfer_agent(ScriptedModel::turns([
            turn(vec![call(
                "transfer",
                json!({"amount": amount, "to": "bob"}),
                "t1",
            )]),
            Message::assistant("I could not do it"),
        ]));
        let ran = Ran::default();
        let out = agent
            .invoke(Message::user("pay bob"), &cfg(&format!("decode-{i}"), &ran))
            .await
            .unwrap();
        assert!(out.is_done(), "no review for {amount}");
        assert!(ran.list().is_empty());
        let answered = answers(&out.values.messages);
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].1, ToolStatus::Error);
        assert!(
            answered[0]
                .2
                .starts_with(&format!("Error invoking tool 'transfer' with kwargs {{'amount': {amount}, 'to': 'bob'}} with error:\n amount: ")),
            "{}",
            answered[0].2
        );
        assert!(
            answered[0]
                .2
                .ends_with("\n Please fix the error and try again.")
        );
    }
}

#[tokio::test]
async fn an_edit_is_checked_by_the_tools_own_decoder_before_it_is_stored() {
    let agent = transfer_agent(ScriptedModel::turns([
        turn(vec![call(
            "transfer",
            json!({"amount": 10, "to": "bob"}),
            "t1",
        )]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let cfg = cfg("edit-decode", &ran);
    let out = agent.invoke(Message::user("pay bob"), &cfg).await.unwrap();
    let pending = out.interrupts[0].id;
    let edit = |amount: Value| json!({"decisions": [{"type": "edit", "edited_action": {"name": "transfer", "args": {"amount": amount, "to": "bob"}}}]});
    for bad in [json!(1.0), json!(4294967296u64), json!(1e10), json!(-0.0)] {
        let err = agent
            .invoke(Command::resume(edit(bad.clone())), &cfg)
            .await
            .unwrap_err();
        match err {
            RunError::Resume(ResumeError::InvalidValue { problems, .. }) => assert!(
                problems
                    .iter()
                    .any(|p| p.contains("do not decode as `transfer`'s arguments")
                        || p.contains("do not match the tool's schema")),
                "{bad}: {problems:?}"
            ),
            other => panic!("{bad}: {other}"),
        }
        let state = agent.get_state(&cfg).await.unwrap();
        assert_eq!(state.interrupts.len(), 1, "still pending after {bad}");
        assert_eq!(state.interrupts[0].id, pending);
    }
    let out = agent
        .invoke(Command::resume(edit(json!(12))), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["transfer 12 to bob"]);
}

fn nested(depth: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        v = json!({ "x": v });
    }
    v
}

#[tokio::test]
async fn values_nested_too_deep_are_refused_where_they_enter() {
    // A reviewer's edit 1,000 levels deep: an error, not a stack overflow.
    let agent = agent(ScriptedModel::turns([
        turn(vec![call(
            "send_email",
            json!({"to": "a", "body": "b"}),
            "c1",
        )]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let cfg = cfg("deep", &ran);
    agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let deep = json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "a", "body": nested(1000)}}}]});
    let err = agent.invoke(Command::resume(deep), &cfg).await.unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
    assert_eq!(agent.get_state(&cfg).await.unwrap().interrupts.len(), 1);

    // Model arguments deep enough to pass JSON parsing but not storage: answered with an
    // error at once, and the thread stays loadable.
    let agent = agent_deep_args();
    let cfg = RunConfig::thread("deep-model").context(Ran::default());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    assert!(out.is_done());
    let state = agent.get_state(&cfg).await.unwrap();
    let answered = answers(&state.values.messages);
    assert_eq!(answered[0].1, ToolStatus::Error);
    assert!(answered[0].2.contains("levels deep"), "{}", answered[0].2);
}

#[derive(hitl_runtime::State, Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Doc {
    data: Value,
}

async fn deepen(_: std::sync::Arc<Doc>, _: NodeContext) -> Result<DocUpdate, NodeError> {
    Ok(DocUpdate::default().data(nested(100)))
}

#[tokio::test]
async fn input_updates_and_node_output_too_deep_are_refused_and_store_nothing() {
    let mut g = hitl_runtime::StateGraph::<Doc>::new();
    let n = g.add_node("deepen", deepen);
    g.add_edge(hitl_runtime::START, n);
    g.add_edge(n, hitl_runtime::END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("doc");
    let err = app
        .invoke(Doc { data: nested(100) }, &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::TooDeep { writer, depth } if writer == "input" && *depth > 64),
        "{err}"
    );
    assert!(matches!(
        app.get_state(&cfg).await,
        Err(RunError::UnknownThread { .. })
    ));
    // Shallow input runs; the node's deep update fails its task, loudly.
    let err = app.invoke(Doc { data: json!(1) }, &cfg).await.unwrap_err();
    assert!(err.to_string().contains("levels deep"), "{err}");
    let err = app
        .update_state(&cfg, DocUpdate::default().data(nested(100)), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::TooDeep { .. }), "{err}");
    assert_eq!(app.get_state(&cfg).await.unwrap().values.data, json!(1));
}

fn agent_deep_args() -> Agent {
    create_agent(ScriptedModel::turns([
        turn(vec![call(
            "send_email",
            json!({"to": "a", "body": nested(125)}),
            "c1",
        )]),
        Message::assistant("done"),
    ]))
    .tools(tools![send_email])
    .middleware(HumanInTheLoop::from_tools())
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap()
}

/// A middleware that sends every model turn straight to the tools, as another
/// middleware's `jump_to` can.
#[derive(Debug)]
struct JumpToTools;

#[async_trait::async_trait]
impl Middleware for JumpToTools {
    fn name(&self) -> &str {
        "JumpToTools"
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            after_model: true,
            ..Hooks::default()
        }
    }

    async fn after_model(&self, _: &AgentState, _: &NodeContext) -> Result<HookOutput, NodeError> {
        Ok(HookOutput::none().jump_to(JumpTo::Tools))
    }
}

#[tokio::test]
async fn a_jump_to_the_tools_never_runs_a_call_without_its_decision() {
    // Whichever order the middleware run in, a reviewed call runs only with a decision
    // bound to it; an unreviewed one still runs.
    for jump_first in [true, false] {
        let builder = create_agent(ScriptedModel::turns([
            turn(vec![
                call("delete_file", json!({"path": "db"}), "c1"),
                call("read_file", json!({"path": "a"}), "c2"),
            ]),
            Message::assistant("done"),
        ]))
        .tools(tools![delete_file, read_file]);
        let builder = if jump_first {
            builder
                .middleware(JumpToTools)
                .middleware(HumanInTheLoop::from_tools())
        } else {
            builder
                .middleware(HumanInTheLoop::from_tools())
                .middleware(JumpToTools)
        };
        let agent = builder.checkpointer(InMemorySaver::new()).build().unwrap();
        let ran = Ran::default();
        let cfg = cfg(&format!("jump-{jump_first}"), &ran);
        let mut out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
        if out.is_interrupted() {
            // The review ran: reject the delete; the jump must not re-run it.
            out = agent
                .invoke(
                    Command::resume(json!({"decisions": [{"type": "reject", "message": "no"}]})),
                    &cfg,
                )
                .await
                .unwrap();
        }
        assert!(out.is_done());
        assert!(
            !ran.list().iter().any(|r| r.starts_with("delete_file")),
            "jump_first={jump_first}: {:?}",
            ran.list()
        );
        let answered = answers(&out.values.messages);
        let delete = answered.iter().find(|(id, _, _)| id == "c1").unwrap();
        assert_eq!(delete.1, ToolStatus::Error, "{delete:?}");
        assert_eq!(
            answered.iter().filter(|(id, _, _)| id == "c1").count(),
            1,
            "answered once"
        );
    }
}

#[tokio::test]
async fn an_edit_that_switches_tools_is_refused() {
    let agent = agent(ScriptedModel::turns([
        turn(vec![call(
            "send_email",
            json!({"to": "a", "body": "b"}),
            "c1",
        )]),
        Message::assistant("done"),
    ]));
    let ran = Ran::default();
    let cfg = cfg("switch", &ran);
    agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let switch = json!({"decisions": [{"type": "edit", "edited_action": {"name": "delete_file", "args": {"path": "db"}}}]});
    let err = agent
        .invoke(Command::resume(switch), &cfg)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("may not switch tools"), "{err}");
    assert!(ran.list().is_empty());
}

#[tokio::test]
async fn a_policy_without_a_review_middleware_does_not_build() {
    let err = create_agent(ScriptedModel::turns([Message::assistant("hi")]))
        .tools(tools![send_email, read_file, ask_user])
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::UnreviewedTools { tools } if tools == &["send_email", "ask_user"])
    );
    assert_eq!(
        err.to_string(),
        "`send_email`, `ask_user` declare a review policy (`#[tool(interrupt(..))]`), but the \
         agent has no review middleware, so they would run unreviewed: add \
         `.middleware(HumanInTheLoop::from_tools())`, or remove the policy"
    );
}

#[derive(hitl_runtime::State, Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Count {
    #[state(reducer = explode)]
    n: u32,
}

fn explode(n: &mut u32, add: u32) {
    if add == 13 {
        panic!("unlucky");
    }
    *n += add;
}

async fn add_one(_: std::sync::Arc<Count>, _: NodeContext) -> Result<CountUpdate, NodeError> {
    Ok(CountUpdate::default().n(1))
}

async fn add_thirteen(_: std::sync::Arc<Count>, _: NodeContext) -> Result<CountUpdate, NodeError> {
    Ok(CountUpdate::default().n(13))
}

#[tokio::test]
async fn panics_in_routers_and_reducers_are_errors_and_store_nothing() {
    // A router that panics.
    let mut g = hitl_runtime::StateGraph::<Count>::new();
    let a = g.add_node("a", add_one);
    g.add_edge(hitl_runtime::START, a);
    g.add_conditional_edges(a, |_: &Count| -> hitl_runtime::Route<Count> {
        panic!("no route")
    });
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("router");
    let err = app.invoke(Count::default(), &cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the conditional edge after `a` panicked: no route"
    );
    let state = app.get_state(&cfg).await.unwrap();
    assert_eq!(state.step, -1, "no checkpoint after the failed barrier");
    assert_eq!(state.next, ["a"], "the step is still to be applied");
    assert_eq!(
        state.tasks[0].result,
        Some(json!({"n": 1})),
        "its result is kept"
    );

    // A reducer that panics, at the barrier and on input.
    let mut g = hitl_runtime::StateGraph::<Count>::new();
    let b = g.add_node("b", add_thirteen);
    g.add_edge(hitl_runtime::START, b);
    g.add_edge(b, hitl_runtime::END);
    let app = g
        .compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let cfg = RunConfig::thread("reducer");
    let err = app.invoke(Count::default(), &cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "a reducer applying the update of `b` panicked: unlucky"
    );
    assert_eq!(app.get_state(&cfg).await.unwrap().step, -1);
    let err = app
        .invoke(Count { n: 13 }, &RunConfig::thread("reducer-input"))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Panicked { .. }), "{err}");
}

/// Wait for the test to let go (a sync tool that blocks its thread).
#[tool]
fn wait_for_release(cx: ToolContext) -> Result<String, ToolError> {
    let release = cx
        .context::<std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>>()
        .expect("the test passes the release channel")
        .clone();
    let _ = release.lock().unwrap().recv();
    Ok("released".into())
}

#[tokio::test]
async fn a_blocking_sync_tool_does_not_block_cancellation() {
    // On this single-threaded runtime, a sync tool run inline would stall everything:
    // the cancellation below could never be observed.
    let agent = create_agent(ScriptedModel::turns([
        turn(vec![call("wait_for_release", json!({}), "w1")]),
        Message::assistant("done"),
    ]))
    .tools(tools![wait_for_release])
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let token = tokio_util::sync::CancellationToken::new();
    let cfg = RunConfig::thread("blocking")
        .context(std::sync::Arc::new(std::sync::Mutex::new(rx)))
        .cancellation(token.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        token.cancel();
    });
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        agent.invoke(Message::user("wait"), &cfg),
    )
    .await
    .expect("the run returned while the tool still blocked its thread");
    assert!(matches!(outcome, Err(RunError::Cancelled)), "{outcome:?}");
    canceller.await.unwrap();
    tx.send(()).unwrap();
}

/// Never finishes.
#[tool]
async fn hang(cx: ToolContext) -> Result<String, ToolError> {
    let _ = cx;
    std::future::pending::<()>().await;
    Ok(String::new())
}

#[tokio::test(start_paused = true)]
async fn a_tool_past_its_timeout_is_stopped_and_the_model_told() {
    let agent = create_agent(ScriptedModel::turns([
        turn(vec![
            call("hang", json!({}), "h1"),
            call("read_file", json!({"path": "a"}), "r1"),
        ]),
        Message::assistant("done"),
    ]))
    .tools(tools![hang, read_file])
    .tool_timeout(std::time::Duration::from_secs(60))
    .tool_timeout_for::<hang>(std::time::Duration::from_secs(5))
    .checkpointer(InMemorySaver::new())
    .build()
    .unwrap();
    let ran = Ran::default();
    let out = agent
        .invoke(Message::user("go"), &cfg("timeout", &ran))
        .await
        .unwrap();
    assert!(out.is_done());
    let answered = answers(&out.values.messages);
    let hung = answered.iter().find(|(id, _, _)| id == "h1").unwrap();
    assert_eq!(hung.1, ToolStatus::Error);
    assert_eq!(hung.2, "`hang` did not finish within 5s and was stopped");
    assert_eq!(ran.list(), ["read_file a"]);
}
