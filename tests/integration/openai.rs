//! The OpenAI-compatible client against a loopback server replaying responses in
//! OpenAI's wire format (`tests/fixtures/openai`), including bodies recorded from real
//! llama-cpp-python and llama.cpp servers (`tests/fixtures/openai/real`).

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
    ChatModel, HumanInTheLoop, Middleware, ModelError, ModelNext, ModelRequest, ModelSettings,
    OpenAiModel, ToolChoice, create_agent,
};
use hitl_runtime::message::AssistantMessage;
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

/// Recorded from llama-cpp-python 0.3.36 and llama.cpp's server (see the README there).
mod real {
    pub(super) const NONE: &str = include_str!("../fixtures/openai/real/llamacpp-python-none.json");
    pub(super) const AUTO_READ: &str =
        include_str!("../fixtures/openai/real/llamacpp-python-auto-read.json");
    pub(super) const AUTO_READ_STREAM: &str =
        include_str!("../fixtures/openai/real/llamacpp-python-auto-read-stream.sse");
    pub(super) const NAMED: &str =
        include_str!("../fixtures/openai/real/llamacpp-python-named.json");
    pub(super) const NAMED_STREAM: &str =
        include_str!("../fixtures/openai/real/llamacpp-python-named-stream.sse");
    pub(super) const REQUIRED: &str =
        include_str!("../fixtures/openai/real/llamacpp-python-required.json");
    pub(super) const RAW_NEWLINE: &str = include_str!(
        "../fixtures/openai/real/llamacpp-python-named-send_email-raw-newline-in-args.json"
    );
    pub(super) const NATIVE_LENGTH: &str =
        include_str!("../fixtures/openai/real/llama-server-native-auto-default-toolcall.json");
    pub(super) const NATIVE_STREAM: &str = include_str!(
        "../fixtures/openai/real/llama-server-native-auto-default-toolcall-stream.sse"
    );
    pub(super) const NATIVE_TEXT_LENGTH_STREAM: &str =
        include_str!("../fixtures/openai/real/llama-server-native-none-stream.sse");
    pub(super) const REQUEST_NONE: &str =
        include_str!("../fixtures/openai/real/requests/none.json");
    pub(super) const REQUEST_AUTO: &str =
        include_str!("../fixtures/openai/real/requests/auto.json");
    pub(super) const REQUEST_NAMED: &str =
        include_str!("../fixtures/openai/real/requests/named.json");
    pub(super) const REQUEST_REQUIRED: &str =
        include_str!("../fixtures/openai/real/requests/required.json");
}

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
fn from_env_requires_a_key_for_openai_itself() {
    // Runs in its own process state only if the variables are absent.
    if std::env::var("OPENAI_API_KEY").is_err() && std::env::var("OPENAI_BASE_URL").is_err() {
        let err = OpenAiModel::from_env().unwrap_err();
        assert!(
            err.to_string().contains("OPENAI_API_KEY is not set"),
            "{err}"
        );
    }
}

/// The `tool_choice` a recorded request sent.
fn recorded_tool_choice(request: &str) -> Value {
    serde_json::from_str::<Value>(request).unwrap()["tool_choice"].clone()
}

const SETTINGS: [&str; 4] = [
    "tool_choice",
    "max_tokens",
    "temperature",
    "parallel_tool_calls",
];

#[tokio::test]
async fn tool_choice_and_settings_are_sent_only_when_configured() {
    let (url, replay) = serve(vec![
        Reply::Json(200, real::NONE),
        Reply::Json(200, real::AUTO_READ),
        Reply::Json(200, real::NAMED),
    ])
    .await;
    let history = vec![Message::user("Read the file notes.txt.")];
    let tools = tools![read_file, delete_file, send_email].specs();

    // Nothing configured: none of the fields is sent, and llama-cpp-python then
    // ignores the tools and answers in text.
    let plain = OpenAiModel::new("gemma-3-270m").base_url(&url);
    let answer = plain.invoke(&request(&history, &tools)).await.unwrap();
    assert_eq!(
        answer.content.text(),
        "The user is in the room. Please turn off lights and music."
    );
    assert!(answer.tool_calls.is_empty());
    let body = replay.requests.lock().unwrap()[0].1.clone();
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let recorded: Value = serde_json::from_str(real::REQUEST_NONE).unwrap();
    assert_eq!(
        keys(&body),
        keys(&recorded),
        "the fields of the recorded request"
    );
    for key in SETTINGS {
        assert!(body.get(key).is_none(), "`{key}` was sent: {body}");
    }
    assert_eq!(body["tools"].as_array().unwrap().len(), 3);

    // Configured on the model: sent as configured, extra fields merged in.
    let model = OpenAiModel::new("gemma-3-270m")
        .base_url(&url)
        .tool_choice(ToolChoice::Auto)
        .max_tokens(256)
        .temperature(0.2)
        .parallel_tool_calls(false)
        .extra_body("top_k", json!(40));
    let answer = model.invoke(&request(&history, &tools)).await.unwrap();
    assert_eq!(answer.content.text(), "", "`content: null` is no text");
    assert_eq!(
        answer.tool_calls.len(),
        1,
        "the legacy `function_call` is ignored"
    );
    assert_eq!(answer.tool_calls[0].name, "read_file");
    assert_eq!(answer.tool_calls[0].args, json!({"path": "notes.txt"}));
    assert!(answer.invalid_tool_calls.is_empty());
    let body = replay.requests.lock().unwrap()[1].1.clone();
    assert_eq!(
        body["tool_choice"],
        recorded_tool_choice(real::REQUEST_AUTO)
    );
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(body["top_k"], 40);

    // A request's own settings win, field by field.
    let forced = request(&history, &tools)
        .tool_choice(ToolChoice::function("read_file"))
        .settings(ModelSettings::new().max_tokens(64).extra("top_k", json!(1)));
    let answer = model.invoke(&forced).await.unwrap();
    assert_eq!(answer.tool_calls[0].name, "read_file");
    assert_eq!(answer.tool_calls[0].args, json!({"path": "my_file"}));
    let body = replay.requests.lock().unwrap()[2].1.clone();
    assert_eq!(
        body["tool_choice"],
        recorded_tool_choice(real::REQUEST_NAMED)
    );
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["top_k"], 1);

    // A tool choice the request's tools cannot satisfy fails before anything is sent.
    let unknown = request(&history, &tools).tool_choice(ToolChoice::function("format_disk"));
    let err = model.invoke(&unknown).await.unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    assert!(
        err.to_string().contains(
            "tool_choice names `format_disk`, which is not a tool of this request (tools: `read_file`, `delete_file`, `send_email`)"
        ),
        "{err}"
    );
    let err = model
        .invoke(&request(&history, &[]).tool_choice(ToolChoice::Required))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`required` needs tools"), "{err}");
    assert_eq!(replay.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn llamacpp_python_answers_tool_choice_required_with_http_500() {
    let (url, replay) = serve(vec![Reply::Json(500, real::REQUIRED)]).await;
    let model = OpenAiModel::new("gemma-3-270m")
        .base_url(&url)
        .tool_choice(ToolChoice::Required);
    let history = vec![Message::user(
        "Please clean up the workspace as my notes say.",
    )];
    let tools = tools![read_file].specs();
    let err = model.invoke(&request(&history, &tools)).await.unwrap_err();
    match &err {
        ModelError::Http { status, body } => {
            assert_eq!(*status, 500);
            assert!(body.contains("internal_server_error"), "{body}");
        }
        other => panic!("{other}"),
    }
    assert!(err.is_retryable());
    let body = replay.requests.lock().unwrap()[0].1.clone();
    assert_eq!(
        body["tool_choice"],
        recorded_tool_choice(real::REQUEST_REQUIRED)
    );
}

/// Forces `read_file` on the first model call of a thread only.
struct ReadFirst;

#[async_trait::async_trait]
impl Middleware for ReadFirst {
    fn name(&self) -> &str {
        "ReadFirst"
    }

    async fn wrap_model_call(
        &self,
        mut request: ModelRequest<'_>,
        next: ModelNext<'_>,
    ) -> Result<AssistantMessage, ModelError> {
        if request.messages.iter().all(|m| m.as_assistant().is_none()) {
            request.tool_choice = Some(ToolChoice::function("read_file"));
            request.settings.max_tokens = Some(128);
        }
        next.run(request).await
    }
}

#[tokio::test]
async fn a_middleware_forces_a_tool_for_one_call() {
    let (url, replay) = serve(vec![
        Reply::Json(200, real::NAMED),
        Reply::Json(200, real::NONE),
    ])
    .await;
    let agent = create_agent(OpenAiModel::new("gemma-3-270m").base_url(&url))
        .tools(tools![read_file, delete_file, send_email])
        .middleware(ReadFirst)
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let ran = Ran::default();
    let cfg = RunConfig::thread("forced").context(ran.clone());
    let out = agent
        .invoke(Message::user("Please clean up the workspace."), &cfg)
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["read_file my_file"]);
    let requests = replay.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].1["tool_choice"],
        json!({"type": "function", "function": {"name": "read_file"}})
    );
    assert_eq!(requests[0].1["max_tokens"], 128);
    for key in SETTINGS {
        assert!(requests[1].1.get(key).is_none(), "`{key}` was sent again");
    }
}

#[tokio::test]
async fn a_llamacpp_python_stream_with_null_deltas_and_repeated_names_gives_one_call() {
    let (url, _) = serve(vec![Reply::Sse(real::NAMED_STREAM)]).await;
    let model = OpenAiModel::new("gemma-3-270m")
        .base_url(&url)
        .tool_choice(ToolChoice::function("read_file"));
    let history = vec![Message::user(
        "Please clean up the workspace as my notes say.",
    )];
    let tools = tools![read_file, delete_file, send_email].specs();
    let chunks = Mutex::new(Vec::new());
    let answer = model
        .stream(&request(&history, &tools), &|c| {
            chunks.lock().unwrap().push(c);
        })
        .await
        .unwrap();
    assert_eq!(answer.tool_calls.len(), 1);
    let call = &answer.tool_calls[0];
    assert_eq!(
        call.name, "read_file",
        "the name repeated in every chunk is taken once"
    );
    assert_eq!(
        call.id.as_deref(),
        Some("call__0_read_file_cmpl-ab11f478-2734-40b2-bdd6-7e83b5cdf7e7")
    );
    assert_eq!(call.args, json!({"path": "my_file.html"}));
    assert!(answer.invalid_tool_calls.is_empty());
    assert_eq!(answer.content.text(), "");
    assert_eq!(answer.response_metadata["finish_reason"], "tool_calls");
    let pieces: Vec<_> = chunks
        .into_inner()
        .unwrap()
        .into_iter()
        .flat_map(|c| c.tool_call_chunks)
        .collect();
    let named: Vec<_> = pieces.iter().filter_map(|p| p.name.as_deref()).collect();
    assert_eq!(named, ["read_file"], "the name is streamed once");
    assert_eq!(pieces.iter().filter(|p| p.id.is_some()).count(), 1);
    let args: String = pieces.iter().map(|p| p.args.as_str()).collect();
    assert_eq!(args, "{\"path\": \"my_file.html\"}");
}

#[tokio::test]
async fn a_llama_server_stream_of_three_calls_after_text_is_reassembled() {
    let (url, replay) = serve(vec![
        Reply::Sse(real::NATIVE_STREAM),
        Reply::Sse(real::NATIVE_TEXT_LENGTH_STREAM),
    ])
    .await;
    let model = OpenAiModel::new("gemma-3-270m").base_url(&url);
    let history = vec![Message::user("Write a file notes.txt.")];
    let tools = tools![read_file, delete_file, send_email].specs();
    let answer = model
        .stream(&request(&history, &tools), &|_| {})
        .await
        .unwrap();
    assert!(
        answer
            .content
            .text()
            .starts_with("Write a file notes.txt.<|im_end|>")
    );
    let calls: Vec<(&str, &str, &Value)> = answer
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_deref().unwrap(), &c.args))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "read_file",
                "xZQ1KlJWJ69eAkoru8RwFfaJAxrLqVXB",
                &json!({"path": "path"})
            ),
            (
                "delete_file",
                "qybiG6XnwVtRhcKUIA5UiTSXt9cYtTFB",
                &json!({"path": "path"})
            ),
            (
                "send_email",
                "ks9nzQkPHbExr8h6nzthqNuqthQA8Nbh",
                &json!({"to": "email", "subject": "To Email to: {name} (Email to: {address_name})",
                        "body": "To email: {name} (email to: {address_name})"})
            ),
        ]
    );
    assert_eq!(answer.usage_metadata.as_ref().unwrap()["total_tokens"], 600);
    assert!(
        replay.requests.lock().unwrap()[0]
            .1
            .get("tool_choice")
            .is_none()
    );

    // A text answer cut at the token limit is an answer, not an error.
    let answer = model
        .stream(&request(&history, &tools), &|_| {})
        .await
        .unwrap();
    assert_eq!(answer.response_metadata["finish_reason"], "length");
    assert!(
        answer
            .content
            .text()
            .starts_with("Please use the tools to help you.")
    );
    assert!(answer.tool_calls.is_empty());
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_a_model_error() {
    let cut = real::NAMED_STREAM.split_once("data: [DONE]").unwrap().0;
    let (url, _) = serve(vec![Reply::Sse(real::AUTO_READ_STREAM), Reply::Sse(cut)]).await;
    let model = OpenAiModel::new("gemma-3-270m")
        .base_url(&url)
        .tool_choice(ToolChoice::Auto);
    let history = vec![Message::user("Read the file notes.txt.")];
    let tools = tools![read_file].specs();
    let err = model
        .stream(&request(&history, &tools), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::InvalidResponse(_)), "{err}");
    assert!(
        err.to_string().contains("the server sent an empty stream"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let err = model
        .stream(&request(&history, &tools), &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the stream ended after 13 events without `data: [DONE]`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_length_stop_inside_tool_call_arguments_is_reported_as_truncation() {
    let (url, replay) = serve(vec![Reply::Json(200, real::NATIVE_LENGTH)]).await;
    let model = OpenAiModel::new("gemma-3-270m").base_url(&url);
    let history = vec![Message::user("Read the file notes.txt.")];
    let tools = tools![read_file, delete_file, send_email].specs();
    let err = model.invoke(&request(&history, &tools)).await.unwrap_err();
    match &err {
        ModelError::Truncated { tool } => assert_eq!(tool, "send_email"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("cut at the token limit"), "{err}");
    assert!(err.to_string().contains("raise `max_tokens`"), "{err}");
    assert!(!err.is_retryable());
    assert!(
        replay.requests.lock().unwrap()[0]
            .1
            .get("max_tokens")
            .is_none()
    );
}

/// A model turn in OpenAI's format with `calls` as `(id, name, raw arguments)`.
fn completion(calls: &[(&str, &str, &str)]) -> &'static str {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": null, "tool_calls": calls}}]});
    Box::leak(body.to_string().into_boxed_str())
}

#[tokio::test]
async fn raw_newline_arguments_are_answered_with_an_error_and_the_model_tries_again() {
    let (url, replay) = serve(vec![
        Reply::Json(200, real::RAW_NEWLINE),
        Reply::Json(200, FINAL_ANSWER),
    ])
    .await;
    let agent = create_agent(OpenAiModel::new("gemma-3-270m").base_url(&url))
        .tools(tools![delete_file, read_file, send_email])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let ran = Ran::default();
    let cfg = RunConfig::thread("raw-newline").context(ran.clone());
    let out = agent
        .invoke(Message::user("Email the user."), &cfg)
        .await
        .unwrap();
    assert!(
        out.is_done(),
        "no review of a call that cannot run: {:?}",
        out.interrupts
    );
    assert!(ran.list().is_empty(), "send_email never ran");
    let messages = &out.values.messages;
    assert_eq!(
        messages.iter().map(Message::kind).collect::<Vec<_>>(),
        ["human", "ai", "tool", "ai"]
    );
    let ai = messages[1].as_assistant().unwrap();
    assert!(ai.tool_calls.is_empty());
    let id = "call__0_send_email_cmpl-be0af35c-4993-47ac-afdf-78320ea6fec8";
    let bad = &ai.invalid_tool_calls[0];
    assert_eq!(bad.name.as_deref(), Some("send_email"));
    assert_eq!(bad.id.as_deref(), Some(id));
    assert!(
        bad.args
            .as_deref()
            .unwrap()
            .contains("{your_email}}\n{subject}")
    );
    let error = bad.error.as_deref().unwrap();
    assert!(error.starts_with("control character"), "{error}");
    let wire = serde_json::to_value(&messages[1]).unwrap();
    assert_eq!(wire["invalid_tool_calls"][0]["type"], "invalid_tool_call");
    assert_eq!(wire["invalid_tool_calls"][0]["id"], id);
    assert!(wire.get("tool_calls").is_none());
    let answer = messages[2].as_tool().unwrap();
    assert_eq!(answer.tool_call_id, id);
    assert_eq!(answer.status, hitl_runtime::message::ToolStatus::Error);
    assert_eq!(
        answer.content.text(),
        format!(
            "Error: the arguments of tool call '{id}' to 'send_email' are not valid JSON: {error}. \
             The tool did not run; please fix the arguments and try again."
        )
    );
    assert_eq!(
        messages[3].text(),
        "I deleted old-report.txt and read index.txt."
    );

    // The second turn shows the model its call as it made it, and the error.
    let second = replay.requests.lock().unwrap()[1].1.clone();
    let sent = second["messages"].as_array().unwrap();
    assert_eq!(sent[1]["role"], "assistant");
    assert_eq!(sent[1]["tool_calls"][0]["id"], id);
    assert_eq!(
        sent[1]["tool_calls"][0]["function"]["arguments"].as_str(),
        bad.args.as_deref()
    );
    assert_eq!(sent[2]["role"], "tool");
    assert_eq!(sent[2]["tool_call_id"], id);
    assert!(
        sent[2]["content"]
            .as_str()
            .unwrap()
            .starts_with("Error: the arguments")
    );
}

#[tokio::test]
async fn only_valid_calls_are_reviewed_and_unknown_tools_are_answered_at_once() {
    let (url, replay) = serve(vec![
        Reply::Json(
            200,
            completion(&[
                (
                    "c_email",
                    "send_email",
                    r#"{"to": "ann@example.com", "body": "hi"}"#,
                ),
                ("c_cut", "delete_file", r#"{"path": "old"#),
                ("c_disk", "format_disk", "{}"),
            ]),
        ),
        Reply::Json(200, FINAL_ANSWER),
    ])
    .await;
    let agent = create_agent(OpenAiModel::new("m").base_url(&url))
        .tools(tools![delete_file, read_file, send_email])
        .middleware(HumanInTheLoop::from_tools())
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap();
    let ran = Ran::default();
    let cfg = RunConfig::thread("mixed").context(ran.clone());
    let out = agent.invoke(Message::user("go"), &cfg).await.unwrap();
    let review = &out.interrupts[0].value;
    let names: Vec<&Value> = review["action_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["name"])
        .collect();
    assert_eq!(names, [&json!("send_email")], "{review}");
    let answered: Vec<(&str, &str)> = out
        .values
        .messages
        .iter()
        .filter_map(Message::as_tool)
        .map(|t| (t.tool_call_id.as_str(), t.name.as_deref().unwrap()))
        .collect();
    assert_eq!(
        answered,
        [("c_disk", "format_disk"), ("c_cut", "delete_file")],
        "answered by the model node, before the review"
    );

    let out = agent
        .invoke(
            Command::resume(json!({"decisions": [{"type": "approve"}]})),
            &cfg,
        )
        .await
        .unwrap();
    assert!(out.is_done());
    assert_eq!(ran.list(), ["send_email to=ann@example.com"]);
    let tool_text = |id: &str| {
        out.values
            .messages
            .iter()
            .filter_map(Message::as_tool)
            .find(|t| t.tool_call_id == id)
            .map(|t| (t.status, t.content.text()))
            .unwrap()
    };
    let (status, text) = tool_text("c_disk");
    assert_eq!(status, hitl_runtime::message::ToolStatus::Error);
    assert_eq!(
        text,
        "Error: format_disk is not a valid tool, try one of [delete_file, read_file, send_email]."
    );
    let (status, text) = tool_text("c_cut");
    assert_eq!(status, hitl_runtime::message::ToolStatus::Error);
    assert!(
        text.starts_with("Error: the arguments of tool call 'c_cut' to 'delete_file' are not valid JSON: EOF while parsing"),
        "{text}"
    );
    assert_eq!(
        replay.requests.lock().unwrap().len(),
        2,
        "one more model turn"
    );
}
