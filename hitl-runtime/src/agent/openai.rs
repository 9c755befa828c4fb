//! An OpenAI-compatible chat model over HTTP (feature `openai`): OpenAI, vLLM, Ollama,
//! llama.cpp and other servers with a `/chat/completions` endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::model::{ChatModel, ModelError, ModelRequest};
use crate::message::{AssistantMessage, Content, Message, MessageChunk, ToolCall, ToolCallChunk};
use crate::tool::ToolSpec;

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
///
/// ```no_run
/// # use hitl_runtime::agent::OpenAiModel;
/// # use std::time::Duration;
/// let model = OpenAiModel::from_env()?      // OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL
///     .timeout(Duration::from_secs(60));
/// let local = OpenAiModel::new("llama3.1").base_url("http://localhost:11434/v1");
/// # Ok::<(), hitl_runtime::agent::ModelError>(())
/// ```
#[derive(Clone)]
pub struct OpenAiModel {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
    temperature: Option<f32>,
}

impl fmt::Debug for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
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
            temperature: None,
        }
    }

    /// A client configured from the environment: `OPENAI_API_KEY` (required),
    /// `OPENAI_BASE_URL` (default OpenAI's) and `OPENAI_MODEL` (default `gpt-4o-mini`).
    pub fn from_env() -> Result<Self, ModelError> {
        let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
        let mut m = Self::new(model);
        if m.api_key.is_none() {
            return Err(ModelError::Config(
                "OPENAI_API_KEY is not set; set it, or build the client with `OpenAiModel::new(..).api_key(..)`".into(),
            ));
        }
        if let Ok(url) = std::env::var("OPENAI_BASE_URL")
            && !url.is_empty()
        {
            m = m.base_url(url);
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

    /// The sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// The model name sent to the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn body(&self, request: &ModelRequest<'_>, stream: bool) -> Value {
        let mut messages: Vec<Value> = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system_prompt {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(request.messages.iter().map(wire_message));
        let mut body = json!({"model": self.model, "messages": messages, "stream": stream});
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(request.tools.iter().map(wire_tool).collect());
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
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
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.args.to_string()}})
                    })
                    .collect();
            }
            v
        }
        Message::Tool(m) => json!({
            "role": "tool", "tool_call_id": m.tool_call_id, "content": wire_content(&m.content)
        }),
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireAssistant,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireAssistant {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

fn parse_arguments(name: &str, arguments: &str) -> Result<Value, ModelError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments).map_err(|e| {
        ModelError::InvalidResponse(format!(
            "the arguments of the call to `{name}` are not JSON ({e}): {arguments}"
        ))
    })
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
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: StreamDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct StreamDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<StreamToolCall>,
}

#[derive(Deserialize)]
struct StreamToolCall {
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<StreamFunction>,
}

#[derive(Deserialize)]
struct StreamFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

#[async_trait::async_trait]
impl ChatModel for OpenAiModel {
    async fn invoke(&self, request: &ModelRequest<'_>) -> Result<AssistantMessage, ModelError> {
        let response = self.send(&self.body(request, false)).await?;
        let completion: Completion = response.json().await.map_err(|e| self.map_err(e))?;
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(ModelError::InvalidResponse(
                "the response has no choices".into(),
            ));
        };
        let tool_calls = choice
            .message
            .tool_calls
            .into_iter()
            .map(|c| {
                let args = parse_arguments(&c.function.name, &c.function.arguments)?;
                Ok(ToolCall::new(
                    c.function.name,
                    args,
                    c.id.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(AssistantMessage {
            content: Content::Text(choice.message.content.unwrap_or_default()),
            id: completion.id,
            tool_calls,
            response_metadata: metadata(completion.model, choice.finish_reason),
            usage_metadata: completion.usage,
            ..Default::default()
        })
    }

    async fn stream(
        &self,
        request: &ModelRequest<'_>,
        on_chunk: &(dyn Fn(MessageChunk) + Send + Sync),
    ) -> Result<AssistantMessage, ModelError> {
        use eventsource_stream::Eventsource;

        let response = self.send(&self.body(request, true)).await?;
        let mut events = response.bytes_stream().eventsource();
        let mut id = None;
        let mut model = None;
        let mut finish = None;
        let mut usage = None;
        let mut text = String::new();
        let mut calls: BTreeMap<usize, PartialCall> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| ModelError::Timeout(self.timeout))?;
            let Some(event) = next else { break };
            let event = event
                .map_err(|e| ModelError::InvalidResponse(format!("broken event stream: {e}")))?;
            if event.data.trim() == "[DONE]" {
                break;
            }
            let chunk: StreamChunk = serde_json::from_str(&event.data).map_err(|e| {
                ModelError::InvalidResponse(format!(
                    "unreadable stream chunk ({e}): {}",
                    event.data
                ))
            })?;
            id = id.or(chunk.id);
            model = model.or(chunk.model);
            usage = chunk.usage.or(usage);
            for choice in chunk.choices {
                finish = choice.finish_reason.or(finish);
                let content = choice.delta.content.unwrap_or_default();
                let mut pieces = Vec::new();
                for call in choice.delta.tool_calls {
                    let entry = calls.entry(call.index).or_default();
                    if call.id.is_some() {
                        entry.id.clone_from(&call.id);
                    }
                    let (name, args) = match call.function {
                        Some(f) => (f.name, f.arguments.unwrap_or_default()),
                        None => (None, String::new()),
                    };
                    if let Some(n) = &name {
                        entry.name.push_str(n);
                    }
                    entry.arguments.push_str(&args);
                    pieces.push(ToolCallChunk {
                        index: call.index,
                        id: call.id,
                        name,
                        args,
                    });
                }
                if !content.is_empty() || !pieces.is_empty() {
                    text.push_str(&content);
                    on_chunk(MessageChunk {
                        id: id.clone(),
                        content,
                        tool_call_chunks: pieces,
                    });
                }
            }
        }
        let tool_calls = calls
            .into_values()
            .map(|c| {
                let args = parse_arguments(&c.name, &c.arguments)?;
                Ok(ToolCall::new(c.name, args, c.id.unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(AssistantMessage {
            content: Content::Text(text),
            id,
            tool_calls,
            response_metadata: metadata(model, finish),
            usage_metadata: usage,
            ..Default::default()
        })
    }

    fn name(&self) -> &str {
        &self.model
    }
}
