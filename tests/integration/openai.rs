//! The OpenAI-compatible client against a loopback server replaying responses in
//! OpenAI's wire format (`tests/fixtures/openai`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use hitl_runtime::agent::{
    ChatModel, HumanInTheLoop, ModelError, ModelRequest, OpenAiModel, create_agent,
};
use hitl_runtime::{
    Command, InMemorySaver, Message, RunConfig, StreamEvent, StreamMode, ToolSpec, tools,
};
use serde_json::{Value, json};

use crate::agent::{Ran, delete_file, read_file, send_email};

#[derive(Clone)]
enum Reply {
    Json(u16, &'static str),
    Sse(&'static str),
    Stall,
}

#[derive(Default)]
struct Replay {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<(Option<String>, Value)>>,
}

async fn completions(
    State(replay): State<Arc<Replay>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_str(&body).expect("the client sends JSON");
    replay.requests.lock().unwrap().push((auth, body));
    let reply = replay
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .expect("a scripted reply");
    match reply {
        Reply::Json(status, text) => (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Reply::Sse(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            text,
        )
            .into_response(),
        Reply::Stall => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn serve(replies: Vec<Reply>) -> (String, Arc<Replay>) {
    let replay = Arc::new(Replay::default());
    replay.replies.lock().unwrap().extend(replies);
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(replay.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), replay)
}

const TOOL_CALLS: &str = include_str!("../fixtures/openai/tool_calls.json");
const FINAL_ANSWER: &str = include_str!("../fixtures/openai/final_answer.json");
const TOOL_CALLS_SSE: &str = include_str!("../fixtures/openai/tool_calls.sse");
const TEXT_SSE: &str = include_str!("../fixtures/openai/text.sse");
const RATE_LIMITED: &str = include_str!("../fixtures/openai/rate_limited.json");

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest::new(messages, tools).system_prompt("Be brief.")
}

#[tokio::test]
async fn a_completion_with_tool_calls_decodes_and_the_request_is_openai_shaped() {
    let (url, replay) = serve(vec![Reply::Json(200, TOOL_CALLS)]).await;
    let model = OpenAiModel::new("gpt-4o-mini")
        .base_url(&url)
        .api_key("sk-test");
    let history = vec![
        Message::user("clean up"),
        Message::assistant_with_tools(
            "",
            vec![hitl_runtime::ToolCall::new(
                "read_file",
                json!({"path": "a"}),
                "call_0",
            )],
        ),
        Message::tool("call_0", "read_file", "contents"),
    ];
    let tools = tools![delete_file, read_file].specs();
    let answer = model.invoke(&request(&history, &tools)).await.unwrap();
    assert_eq!(
        answer.id.as_deref(),
        Some("chatcmpl-BrY7q9Lk2Xw3tZ8mNcVfQpDs1eHa")
    );
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(answer.tool_calls[0].name, "delete_file");
    assert_eq!(answer.tool_calls[0].args, json!({"path": "old-report.txt"}));
    assert_eq!(
        answer.tool_calls[0].id.as_deref(),
        Some("call_Wq4Gx2dYb1Lr8TnK0pJcVh3M")
    );
    assert_eq!(answer.response_metadata["finish_reason"], "tool_calls");
    assert_eq!(answer.usage_metadata.as_ref().unwrap()["total_tokens"], 191);

    let (auth, body) = replay.requests.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], false);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "clean up"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "contents"}
        ])
    );
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "delete_file");
    let params = &body["tools"][0]["function"]["parameters"];
    assert_eq!(params["required"], json!(["path"]));
    assert!(params.get("$schema").is_none(), "{params}");
}

#[tokio::test]
async fn streamed_tool_call_deltas_split_across_chunks_are_reassembled() {
    let (url, replay) = serve(vec![Reply::Sse(TOOL_CALLS_SSE)]).await;
    let model = OpenAiModel::new("gpt-4o-mini").base_url(&url);
    let history = vec![Message::user("email ann and read my calendar")];
    let chunks = Mutex::new(Vec::new());
    let answer = model
        .stream(&request(&history, &[]), &|c| chunks.lock().unwrap().push(c))
        .await
        .unwrap();
    assert_eq!(answer.tool_calls.len(), 2);
    assert_eq!(answer.tool_calls[0].name, "send_email");
    assert_eq!(answer.tool_calls[0].id.as_deref(), Some("call_Aa1"));
    assert_eq!(
        answer.tool_calls[0].args,
        json!({"to": "ann@example.com", "body": "Lunch?"})
    );
    assert_eq!(answer.tool_calls[1].args, json!({"path": "calendar.txt"}));
    assert_eq!(answer.usage_metadata.as_ref().unwrap()["total_tokens"], 139);
    let chunks = chunks.into_inner().unwrap();
    assert_eq!(
        chunks.len(),
        7,
        "one message chunk per delta that carried something"
    );
    let args: String = chunks
        .iter()
        .flat_map(|c| &c.tool_call_chunks)
        .filter(|t| t.index == 0)
        .map(|t| t.args.as_str())
        .collect();
    assert_eq!(args, "{\"to\": \"ann@example.com\", \"body\": \"Lunch?\"}");
    let body = &replay.requests.lock().unwrap()[0].1;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn provider_errors_map_to_model_errors() {
    let (url, _) = serve(vec![
        Reply::Json(429, RATE_LIMITED),
        Reply::Json(200, "not json"),
    ])
    .await;
    let model = OpenAiModel::new("m").base_url(&url);
    let history = vec![Message::user("hi")];
    let err = model.invoke(&request(&history, &[])).await.unwrap_err();
    match &err {
        ModelError::Http { status, body } => {
            assert_eq!(*status, 429);
            assert!(body.contains("rate_limit_exceeded"));
        }
        other => panic!("{other}"),
    }
    assert!(err.is_retryable());
    let err = model.invoke(&request(&history, &[])).await.unwrap_err();
    assert!(matches!(err, ModelError::InvalidResponse(_)), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_slow_provider_times_out_and_an_absent_one_is_a_connection_error() {
    let (url, _) = serve(vec![Reply::Stall]).await;
    let model = OpenAiModel::new("m")
        .base_url(&url)
        .timeout(Duration::from_millis(200));
    let history = vec![Message::user("hi")];
    let err = model.invoke(&request(&history, &[])).await.unwrap_err();
    assert!(matches!(err, ModelError::Timeout(_)), "{err}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let model = OpenAiModel::new("m").base_url(format!("http://127.0.0.1:{port}/v1"));
    let err = model.invoke(&request(&history, &[])).await.unwrap_err();
    assert!(matches!(err, ModelError::Connection(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_agent_on_the_openai_client_pauses_resumes_and_streams_tokens() {
    let (url, replay) = serve(vec![
        Reply::Json(200, TOOL_CALLS),
        Reply::Json(200, FINAL_ANSWER),
    ])
    .await;
    let agent = create_agent(OpenAiModel::new("gpt-4o-mini").base_url(&url))
        .tools(tools![delete_file, read_file, send_email])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let ran = Ran::default();
    let cfg = RunConfig::thread("openai").context(ran.clone());
    let out = agent.invoke(Message::user("clean up"), &cfg).await.unwrap();
    assert_eq!(
        out.interrupts[0].value["action_requests"][0]["name"],
        "delete_file"
    );
    let out = agent
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(
        out.values.messages.last().unwrap().text(),
        "I deleted old-report.txt and read index.txt."
    );
    let mut runs = ran.list();
    runs.sort();
    assert_eq!(runs, ["delete_file old-report.txt", "read_file index.txt"]);
    let second = replay.requests.lock().unwrap()[1].1.clone();
    let tool_results: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_results.len(), 2);
    assert_eq!(
        tool_results[0]["tool_call_id"],
        "call_Wq4Gx2dYb1Lr8TnK0pJcVh3M"
    );

    // Token streaming in the messages mode.
    let (url, _) = serve(vec![Reply::Sse(TEXT_SSE)]).await;
    let agent = create_agent(OpenAiModel::new("gpt-4o-mini").base_url(&url))
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let mut stream = agent.stream(
        Message::user("hi"),
        &RunConfig::thread("tokens"),
        StreamMode::Messages,
    );
    let mut tokens = Vec::new();
    while let Some(event) = stream.next().await {
        if let StreamEvent::Message { chunk, .. } = event.unwrap() {
            tokens.push(chunk.content);
        }
    }
    assert_eq!(tokens, ["Email", " sent", " to Ann."]);
}

#[test]
fn from_env_requires_a_key() {
    // Runs in its own process state only if the variable is absent.
    if std::env::var("OPENAI_API_KEY").is_err() {
        let err = OpenAiModel::from_env().unwrap_err();
        assert!(
            err.to_string().contains("OPENAI_API_KEY is not set"),
            "{err}"
        );
    }
}
