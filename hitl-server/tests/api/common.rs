//! Test graphs (the reference recordings' graphs, rebuilt with hitl) and helpers to
//! call the router.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use hitl_runtime::agent::{Agent, HumanInTheLoop, create_agent};
use hitl_runtime::message::AssistantMessage;
use hitl_runtime::testing::ScriptedModel;
use hitl_runtime::{
    CompiledGraph, END, InMemorySaver, Message, NodeContext, START, State, StateGraph, ToolCall,
    ToolError, tool, tools,
};
use hitl_server::{Server, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject, respond]))]
async fn send_email(to: String, subject: String) -> Result<String, ToolError> {
    Ok(format!("sent email to {to} about {subject}"))
}

/// Read a data value by key.
#[tool]
async fn read_data(key: String) -> Result<String, ToolError> {
    Ok(format!("value of {key} = 42"))
}

/// The reference recordings' model: after a user message, `send_email` (reviewed)
/// and `read_data`; after tool results, a final text.
pub(crate) fn reference_model() -> ScriptedModel {
    ScriptedModel::from_fn(|messages| {
        if messages.last().is_some_and(|m| m.as_tool().is_some()) {
            let results: Vec<String> = messages
                .iter()
                .filter_map(Message::as_tool)
                .map(|t| t.content.to_string())
                .collect();
            return Ok(AssistantMessage {
                content: format!("Done. Tool results: {}", results.join(" | ")).into(),
                ..Default::default()
            });
        }
        let n = messages.len();
        Ok(AssistantMessage {
            tool_calls: vec![
                ToolCall::new(
                    "send_email",
                    json!({"to": "alice@example.com", "subject": "Report"}),
                    format!("call_send_email_{n}"),
                ),
                ToolCall::new(
                    "read_data",
                    json!({"key": "q3"}),
                    format!("call_read_data_{n}"),
                ),
            ],
            ..Default::default()
        })
    })
}

/// The reference recordings' tools.
pub(crate) fn reference_tools() -> hitl_runtime::ToolSet {
    tools![send_email, read_data]
}

/// The reference recordings' agent, in memory.
pub(crate) fn reference_agent() -> Agent {
    create_agent(reference_model())
        .tools(reference_tools())
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Ask {
    #[serde(default)]
    pub(crate) topic: String,
    #[serde(default)]
    pub(crate) answer: Value,
    #[state(reducer = append)]
    #[serde(default)]
    pub(crate) steps: Vec<String>,
}

/// The reference's `custom` graph: `ask` writes a custom event and interrupts, then
/// `finish`.
pub(crate) fn custom_graph() -> CompiledGraph<Ask> {
    let mut g = StateGraph::<Ask>::new();
    let ask = g.add_node("ask", |s: Arc<Ask>, cx: NodeContext| async move {
        cx.writer().write(json!({"stage": "asking"}));
        let answer: Value = cx
            .interrupt(json!({"question": format!("What about {}?", s.topic)}))
            .await?;
        Ok(AskUpdate::default().answer(answer))
    });
    let finish = g.add_node("finish", |s: Arc<Ask>, _| async move {
        Ok(AskUpdate::default().topic(format!("{} (answered)", s.topic)))
    });
    g.add_edge(START, ask);
    g.add_edge(ask, finish);
    g.add_edge(finish, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

/// Two nodes that each interrupt in the same superstep.
pub(crate) fn parallel_graph() -> CompiledGraph<Ask> {
    let mut g = StateGraph::<Ask>::new();
    let mut nodes = Vec::new();
    for name in ["left", "right"] {
        nodes.push(g.add_node(name, move |_, cx: NodeContext| async move {
            let v: Value = cx.interrupt(json!({"side": name})).await?;
            Ok(AskUpdate::default().steps(vec![format!("{name}:{v}")]))
        }));
    }
    for n in nodes {
        g.add_edge(START, n);
        g.add_edge(n, END);
    }
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

/// Lets a test hold a run inside its node: `entered` gets a permit when the node
/// starts; the node finishes when `release` gets one.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) entered: Semaphore,
    pub(crate) release: Semaphore,
}

impl Gate {
    /// Waits until a run is inside the gated node.
    pub(crate) async fn wait_entered(&self) {
        self.entered.acquire().await.unwrap().forget();
    }

    /// Lets one run through.
    pub(crate) fn open_once(&self) {
        self.release.add_permits(1);
    }
}

/// `slow_step` waits at the gate, then appends "done".
pub(crate) fn slow_graph(gate: Arc<Gate>) -> CompiledGraph<Ask> {
    let mut g = StateGraph::<Ask>::new();
    let step = g.add_node("slow_step", move |_, _| {
        let gate = gate.clone();
        async move {
            gate.entered.add_permits(1);
            gate.release.acquire().await.unwrap().forget();
            Ok(AskUpdate::default().steps(vec!["done".into()]))
        }
    });
    g.add_edge(START, step);
    g.add_edge(step, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

pub(crate) struct TestServer {
    pub(crate) router: Router,
    pub(crate) gate: Arc<Gate>,
}

/// A server with the graphs `agent`, `custom`, `parallel` and `slow`, in memory.
pub(crate) fn server() -> TestServer {
    server_with(|b| b)
}

pub(crate) fn server_with(
    configure: impl FnOnce(hitl_server::ServerBuilder) -> hitl_server::ServerBuilder,
) -> TestServer {
    let gate = Arc::new(Gate {
        entered: Semaphore::new(0),
        release: Semaphore::new(0),
    });
    let builder = Server::builder()
        .graph("agent", reference_agent())
        .graph("custom", custom_graph())
        .graph("parallel", parallel_graph())
        .graph("slow", slow_graph(gate.clone()))
        .store(Store::in_memory());
    let server = configure(builder).build().unwrap();
    TestServer {
        router: server.router(),
        gate,
    }
}

/// A response, its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
    pub(crate) json: Value,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `detail` of an error body.
    pub(crate) fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or_default()
    }
}

pub(crate) fn request(
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

pub(crate) async fn send(router: &Router, req: Request<Body>) -> Resp {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

pub(crate) async fn call(router: &Router, method: Method, path: &str, body: Option<Value>) -> Resp {
    send(router, request(method, path, body, &[])).await
}

pub(crate) async fn get(router: &Router, path: &str) -> Resp {
    call(router, Method::GET, path, None).await
}

pub(crate) async fn post(router: &Router, path: &str, body: Value) -> Resp {
    call(router, Method::POST, path, Some(body)).await
}

/// One SSE event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) event: String,
    pub(crate) data: Value,
    pub(crate) id: Option<String>,
}

/// Parses an SSE body (CRLF line ends, as the reference server sends).
pub(crate) fn parse_sse(text: &str) -> Vec<Event> {
    text.split("\r\n\r\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .map(|block| {
            let mut event = Event {
                event: String::new(),
                data: Value::Null,
                id: None,
            };
            for line in block.split("\r\n") {
                if let Some(v) = line.strip_prefix("event: ") {
                    event.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    event.data = serde_json::from_str(v).unwrap();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    event.id = Some(v.to_owned());
                }
            }
            event
        })
        .collect()
}

/// The event names of a recorded reference response.
pub(crate) fn reference_names(recording: &str) -> Vec<String> {
    recording
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(|n| n.trim_end_matches('\r').to_owned())
        .collect()
}

pub(crate) fn names(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}

/// `POST /threads` and its id.
pub(crate) async fn new_thread(router: &Router) -> String {
    let r = post(router, "/threads", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["thread_id"].as_str().unwrap().to_owned()
}

pub(crate) fn email_input() -> Value {
    json!({"messages": [{"role": "user", "content": "Email Alice the Q3 report"}]})
}

/// Streams a run to its end.
pub(crate) async fn stream(router: &Router, thread: &str, body: Value) -> (Resp, Vec<Event>) {
    let r = post(router, &format!("/threads/{thread}/runs/stream"), body).await;
    let events = parse_sse(&r.text);
    (r, events)
}

/// Runs the agent to its review interrupt; returns the interrupt id.
pub(crate) async fn agent_to_interrupt(router: &Router, thread: &str) -> String {
    let r = post(
        router,
        &format!("/threads/{thread}/runs/wait"),
        json!({"assistant_id": "agent", "input": email_input()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["__interrupt__"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn approve() -> Value {
    json!({"decisions": [{"type": "approve"}]})
}
