//! An OpenAI-compatible chat model over HTTP (feature `openai`): OpenAI, vLLM, Ollama,
//! llama.cpp and other servers with a `/chat/completions` endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::model::{ChatModel, ModelError, ModelRequest, ModelSettings, ToolChoice};
use crate::message::{
    AssistantMessage, Content, InvalidToolCall, Message, MessageChunk, ToolCall, ToolCallChunk,
};
use crate::tool::ToolSpec;

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
///
/// ```no_run
/// # use hitl_runtime::agent::{OpenAiModel, ToolChoice};
/// # use std::time::Duration;
/// let model = OpenAiModel::from_env()?      // OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL
///     .timeout(Duration::from_secs(60));
/// let local = OpenAiModel::new("llama3.1")
///     .base_url("http://localhost:11434/v1")
///     .tool_choice(ToolChoice::Auto) // llama-cpp-python ignores tools without it
///     .max_tokens(1024);
/// # Ok::<(), hitl_runtime::agent::ModelError>(())
/// ```
///
/// Only what is configured is sent: no `tool_choice`, `max_tokens`, `temperature` or
/// `parallel_tool_calls` unless set here or in the [`ModelRequest`] (whose settings
/// win), so the server's defaults apply.
///
/// Tool calls whose arguments are not valid JSON become
/// [`invalid_tool_calls`](AssistantMessage::invalid_tool_calls) (an agent answers them
/// with an error the model can read). An answer cut at the token limit in the middle of
/// a tool call's arguments is [`ModelError::Truncated`]; a stream that ends without
/// `data: [DONE]` is [`ModelError::InvalidResponse`].
#[derive(Clone)]
pub struct OpenAiModel {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
    tool_choice: Option<ToolChoice>,
    settings: ModelSettings,
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("tool_choice", &self.tool_choice)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// A client for `model` at `https://api.openai.com/v1`, with the key from
    /// `OPENAI_API_KEY` if it is set.
    pub fn new(model: impl Into<String>) -> Self {
        // reqwest is built without a default TLS provider; use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        OpenAiModel {
            client: reqwest::Client::new(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            model: model.into(),
            timeout: Duration::from_secs(120),
            tool_choice: None,
            settings: ModelSettings::default(),
        }
    }

    /// A client configured from the environment: `OPENAI_BASE_URL` (default OpenAI's),
    /// `OPENAI_MODEL` (default `gpt-4o-mini`) and `OPENAI_API_KEY` (required for
    /// OpenAI's own server; local servers usually need none).
    pub fn from_env() -> Result<Self, ModelError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let mut m = Self::new(var("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".into()));
        match var("OPENAI_BASE_URL") {
            Some(url) => m = m.base_url(url),
            None if m.api_key.is_none() => {
                return Err(ModelError::Config(
                    "OPENAI_API_KEY is not set; set it, or set OPENAI_BASE_URL to a server that needs no key, or build the client with `OpenAiModel::new(..).api_key(..)`".into(),
                ));
            }
            None => {}
        }
        Ok(m)
    }

    /// The server, e.g. `http://localhost:8000/v1` (the path before `/chat/completions`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The API key, sent as a bearer token.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// How long one call may take (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether and which tool the model must call, unless a request says otherwise.
    /// Not sent when unset, nor when a request has no tools (`Auto` and `None` are then
    /// left out; `Required` and `Function` are a [`ModelError::Config`]).
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// The most tokens an answer may have (`max_tokens`).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.settings.max_tokens = Some(max_tokens);
        self
    }

    /// The sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.settings.temperature = Some(temperature);
        self
    }

    /// Whether the model may call several tools in one turn (`parallel_tool_calls`).
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.settings.parallel_tool_calls = Some(parallel);
        self
    }

    /// Adds a field to every request body, e.g. `.extra_body("top_k", json!(40))` for
    /// a server's own options; it replaces a field of the same name.
    pub fn extra_body(mut self, key: impl Into<String>, value: Value) -> Self {
        self.settings.extra.insert(key.into(), value);
        self
    }

    /// Replaces all generation settings.
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The model name sent to the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The server's URL (the path before `/chat/completions`).
    pub fn endpoint(&self) -> &str {
        &self.base_url
    }

    fn body(&self, request: &ModelRequest<'_>, stream: bool) -> Result<Value, ModelError> {
        let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system_prompt {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(request.messages.iter().map(wire_message));
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(stream));
        if !request.tools.is_empty() {
            let tools = request.tools.iter().map(wire_tool).collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = request.tool_choice.as_ref().or(self.tool_choice.as_ref())
            && let Some(choice) = wire_tool_choice(choice, &request.tools)?
        {
            body.insert("tool_choice".into(), choice);
        }
        let settings = self.settings.overridden_by(&request.settings);
        if let Some(n) = settings.max_tokens {
            body.insert("max_tokens".into(), json!(n));
        }
        if let Some(t) = settings.temperature {
            body.insert("temperature".into(), decimal(t));
        }
        if let Some(p) = settings.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
        if stream {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        body.extend(settings.extra);
        Ok(Value::Object(body))
    }

    async fn send(&self, body: &Value) -> Result<reqwest::Response, ModelError> {
        let mut req = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .timeout(self.timeout)
            .json(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let response = req.send().await.map_err(|e| self.map_err(e))?;
        let status = response.status();
        if !status.is_success() {
            let mut body = response.text().await.unwrap_or_default();
            body.truncate(2000);
            return Err(ModelError::Http {
                status: status.as_u16(),
                body,
            });
        }
        Ok(response)
    }

    fn map_err(&self, e: reqwest::Error) -> ModelError {
        if e.is_timeout() {
            ModelError::Timeout(self.timeout)
        } else if e.is_connect() || e.is_request() {
            ModelError::Connection(e.to_string())
        } else if e.is_decode() || e.is_body() {
            ModelError::InvalidResponse(e.to_string())
        } else {
            ModelError::Other(Box::new(e))
        }
    }
}

/// An `f32` as the decimal it was written as (`0.2`, not `0.20000000298023224`).
fn decimal(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `tool_choice` in OpenAI's format; `None` when it is not to be sent.
fn wire_tool_choice(choice: &ToolChoice, tools: &[ToolSpec]) -> Result<Option<Value>, ModelError> {
    let names = || {
        tools
            .iter()
            .map(|t| format!("`{}`", t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Some(match choice {
        // OpenAI rejects a tool choice without tools; without tools these change nothing.
        ToolChoice::Auto | ToolChoice::None if tools.is_empty() => return Ok(None),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required if tools.is_empty() => {
            return Err(ModelError::Config(
                "tool_choice `required` needs tools, but the request has none; give the agent tools or use another tool choice".into(),
            ));
        }
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => {
            return Err(ModelError::Config(format!(
                "tool_choice names `{name}`, which is not a tool of this request (tools: {}); name one of them",
                if tools.is_empty() {
                    "none".into()
                } else {
                    names()
                }
            )));
        }
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }))
}

fn wire_tool(spec: &ToolSpec) -> Value {
    let mut parameters = spec.parameters.clone();
    if let Some(o) = parameters.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    json!({"type": "function", "function": {
        "name": spec.name, "description": spec.description, "parameters": parameters
    }})
}

fn wire_content(content: &Content) -> Value {
    match content {
        Content::Text(t) => Value::String(t.clone()),
        Content::Blocks(b) => Value::Array(b.clone()),
    }
}

/// A message in OpenAI's request format.
fn wire_message(message: &Message) -> Value {
    match message {
        Message::System(m) => json!({"role": "system", "content": wire_content(&m.content)}),
        Message::User(m) => {
            let mut v = json!({"role": "user", "content": wire_content(&m.content)});
            if let Some(name) = &m.name {
                v["name"] = json!(name);
            }
            v
        }
        Message::Assistant(m) => {
            let mut v = json!({"role": "assistant", "content": wire_content(&m.content)});
            if !m.tool_calls.is_empty() || !m.invalid_tool_calls.is_empty() {
                // Invalid calls are sent back as the model made them: the error tool
                // messages answering them must follow a call with their id.
                let invalid = m.invalid_tool_calls.iter().map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name.as_deref().unwrap_or_default(),
                                        "arguments": c.args.as_deref().unwrap_or_default()}})
                });
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.args.to_string()}})
                    })
                    .chain(invalid)
                    .collect();
            }
            v
        }
        Message::Tool(m) => json!({
            "role": "tool", "tool_call_id": m.tool_call_id, "content": wire_content(&m.content)
        }),
    }
}

/// Folds the events of a chat-completions stream into one answer: text appended,
/// each tool call's id and name taken once, its arguments appended.
#[derive(Default)]
struct StreamFold {
    id: Option<String>,
    model: Option<String>,
    finish: Option<String>,
    usage: Option<Value>,
    text: String,
    calls: BTreeMap<usize, RawCall>,
    received: usize,
    done: bool,
}

impl StreamFold {
    /// One event's data.
    fn event(
        &mut self,
        data: &str,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<(), ModelError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        self.received += 1;
        let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
            ModelError::InvalidResponse(format!("unreadable stream chunk ({e}): {data}"))
        })?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(ModelError::InvalidResponse(format!(
                "the server reported an error in the stream: {error}"
            )));
        }
        self.id = self.id.take().or(chunk.id);
        self.model = self.model.take().or(chunk.model);
        self.usage = chunk.usage.or(self.usage.take());
        for choice in chunk.choices {
            self.finish = choice.finish_reason.or(self.finish.take());
            let content = choice.delta.content.unwrap_or_default();
            let mut pieces = Vec::new();
            for (position, call) in choice.delta.tool_calls.into_iter().enumerate() {
                let index = call.index.unwrap_or(position);
                let entry = self.calls.entry(index).or_default();
                // The id and the name are taken once: some servers repeat them in
                // every chunk (llama-cpp-python), OpenAI sends them in the first.
                let call_id = call.id.filter(|i| !i.is_empty() && entry.id.is_none());
                if call_id.is_some() {
                    entry.id.clone_from(&call_id);
                }
                let name = call
                    .function
                    .name
                    .filter(|n| !n.is_empty() && entry.name.is_empty());
                if let Some(n) = &name {
                    entry.name.clone_from(n);
                }
                let args = arguments_text(call.function.arguments);
                entry.arguments.push_str(&args);
                if call_id.is_some() || name.is_some() || !args.is_empty() {
                    pieces.push(ToolCallChunk {
                        index,
                        id: call_id,
                        name,
                        args,
                    });
                }
            }
            if !content.is_empty() || !pieces.is_empty() {
                self.text.push_str(&content);
                on_chunk(MessageChunk {
                    id: self.id.clone(),
                    content,
                    tool_call_chunks: pieces,
                });
            }
        }
        Ok(())
    }

    /// The answer, once the stream ended.
    fn finish(self) -> Result<AssistantMessage, ModelError> {
        if !self.done {
            return Err(ModelError::InvalidResponse(if self.received == 0 {
                "the server sent an empty stream (no events and no `data: [DONE]`); it may not \
                 support streaming this request (llama-cpp-python does not stream with \
                 `tool_choice: \"auto\"`): call the model without streaming or change the tool choice"
                    .into()
            } else {
                format!(
                    "the stream ended after {} events without `data: [DONE]`, so the \
                     answer may be incomplete (the connection was cut or the server stopped); retry",
                    self.received
                )
            }));
        }
        let (tool_calls, invalid_tool_calls) =
            parse_calls(self.calls.into_values(), self.finish.as_deref())?;
        Ok(AssistantMessage {
            content: Content::Text(self.text),
            id: self.id,
            tool_calls,
            invalid_tool_calls,
            response_metadata: metadata(self.model, self.finish),
            usage_metadata: self.usage,
            ..Default::default()
        })
    }
}

impl Completion {
    /// The answer of a whole (non-streamed) response.
    fn into_message(self) -> Result<AssistantMessage, ModelError> {
        let Some(choice) = self.choices.into_iter().next() else {
            return Err(ModelError::InvalidResponse(
                "the response has no choices".into(),
            ));
        };
        let calls = choice.message.tool_calls.into_iter().map(|c| RawCall {
            id: c.id,
            name: c.function.name.unwrap_or_default(),
            arguments: arguments_text(c.function.arguments),
        });
        let (tool_calls, invalid_tool_calls) = parse_calls(calls, choice.finish_reason.as_deref())?;
        Ok(AssistantMessage {
            content: Content::Text(choice.message.content.unwrap_or_default()),
            id: self.id,
            tool_calls,
            invalid_tool_calls,
            response_metadata: metadata(self.model, choice.finish_reason),
            usage_metadata: self.usage,
            ..Default::default()
        })
    }
}

/// Reads a whole server-sent-events body as a chat-completions stream, as
/// [`OpenAiModel`] does when it streams (for fuzzing the parser; not public API).
#[doc(hidden)]
pub async fn fold_sse(body: Vec<u8>) -> Result<AssistantMessage, ModelError> {
    use eventsource_stream::Eventsource;

    let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)]);
    let mut events = chunks.eventsource();
    let mut fold = StreamFold::default();
    while !fold.done {
        let Some(event) = events.next().await else {
            break;
        };
        let event =
            event.map_err(|e| ModelError::InvalidResponse(format!("broken event stream: {e}")))?;
        fold.event(&event.data, &|_| {})?;
    }
    fold.finish()
}

/// Reads a whole (non-streamed) chat-completions response body (for fuzzing; not
/// public API).
#[doc(hidden)]
pub fn read_completion(body: &[u8]) -> Result<AssistantMessage, ModelError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| ModelError::InvalidResponse(format!("unreadable completion: {e}")))?;
    completion.into_message()
}

/// Reads `null` as the default (servers send `"tool_calls": null`, `"choices": null`, ...).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Tool-call arguments: a JSON string as OpenAI sends them; some servers send the
/// object itself.
fn arguments_text(arguments: Option<Value>) -> String {
    match arguments {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default, deserialize_with = "nullable")]
    message: WireAssistant,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireAssistant {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    function: WireFunction,
}

#[derive(Deserialize, Default)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// A tool call as received, before its arguments are parsed.
#[derive(Default)]
struct RawCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Parses each call's arguments: the calls that parse, and those that do not (which
/// the agent answers with an error). Arguments cut off at the token limit are
/// [`ModelError::Truncated`].
fn parse_calls(
    calls: impl IntoIterator<Item = RawCall>,
    finish: Option<&str>,
) -> Result<(Vec<ToolCall>, Vec<InvalidToolCall>), ModelError> {
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    for call in calls {
        let parsed = if call.arguments.trim().is_empty() {
            Ok(Value::Object(Map::new()))
        } else {
            serde_json::from_str::<Value>(&call.arguments)
        };
        match parsed {
            Ok(args) => valid.push(ToolCall::new(call.name, args, call.id.unwrap_or_default())),
            Err(e) if e.is_eof() && finish == Some("length") => {
                return Err(ModelError::Truncated { tool: call.name });
            }
            Err(e) => {
                let mut bad = InvalidToolCall::new(call.name, call.arguments, "", e.to_string());
                bad.id = call.id;
                invalid.push(bad);
            }
        }
    }
    Ok((valid, invalid))
}

fn metadata(model: Option<String>, finish: Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(model) = model {
        m.insert("model_name".into(), json!(model));
    }
    if let Some(finish) = finish {
        m.insert("finish_reason".into(), json!(finish));
    }
    m
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default, deserialize_with = "nullable")]
    delta: StreamDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct StreamDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    tool_calls: Vec<StreamToolCall>,
}

#[derive(Deserialize)]
struct StreamToolCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    function: WireFunction,
}

#[async_trait::async_trait]
impl ChatModel for OpenAiModel {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        let response = self.send(&self.body(request, false)?).await?;
        let completion: Completion = response.json().await.map_err(|e| self.map_err(e))?;
        completion.into_message()
    }

    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        use eventsource_stream::Eventsource;

        let response = self.send(&self.body(request, true)?).await?;
        let mut events = response.bytes_stream().eventsource();
        let mut fold = StreamFold::default();
        let deadline = tokio::time::Instant::now() + self.timeout;
        while !fold.done {
            let next = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| ModelError::Timeout(self.timeout))?;
            let Some(event) = next else { break };
            let event = event
                .map_err(|e| ModelError::InvalidResponse(format!("broken event stream: {e}")))?;
            fold.event(&event.data, on_chunk)?;
        }
        fold.finish()
    }

    fn name(&self) -> &str {
        &self.model
    }
}
