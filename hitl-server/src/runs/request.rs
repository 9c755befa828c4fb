//! What a client asks for: the run request, its stream modes, and the run it becomes.

use super::*;

/// The stream modes a client asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Modes {
    pub(crate) values: bool,
    pub(crate) updates: bool,
    pub(crate) messages: bool,
    pub(crate) custom: bool,
    pub(crate) tasks: bool,
    pub(crate) checkpoints: bool,
    pub(crate) debug: bool,
}

pub(crate) const MODE_NAMES: &str =
    "values, updates, messages-tuple, custom, tasks, checkpoints, debug";

impl Modes {
    pub(crate) fn parse(v: Option<&Value>) -> Result<(Modes, Vec<String>), ApiError> {
        let names: Vec<String> = match v {
            None | Some(Value::Null) => vec!["values".into()],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|m| {
                    m.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::Unprocessable(format!(
                            "stream_mode must be a string or a list of strings, got {m}"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ApiError::Unprocessable(format!(
                    "stream_mode must be a string or a list of strings, got {other}"
                )));
            }
        };
        let names = if names.is_empty() {
            vec!["values".into()]
        } else {
            names
        };
        let mut m = Modes::default();
        for n in &names {
            match n.as_str() {
                "values" => m.values = true,
                "updates" => m.updates = true,
                "messages-tuple" => m.messages = true,
                "custom" => m.custom = true,
                "tasks" => m.tasks = true,
                "checkpoints" => m.checkpoints = true,
                "debug" => m.debug = true,
                "messages" | "events" => {
                    return Err(ApiError::Unprocessable(format!(
                        "stream mode `{n}` is not supported by this server; use `messages-tuple` for model tokens. Supported: {MODE_NAMES}"
                    )));
                }
                other => {
                    return Err(ApiError::Unprocessable(format!(
                        "unknown stream mode `{other}`; supported: {MODE_NAMES}"
                    )));
                }
            }
        }
        Ok((m, names))
    }

    /// What the runtime streams: the client's modes, plus values (a resume is known
    /// valid at the first event), updates (a step that wrote nothing sends no
    /// `values`) and checkpoints when the client wants values (the input checkpoint
    /// becomes the first `values` event), as the reference server does.
    pub(crate) fn runtime(self) -> StreamModes {
        let mut s = StreamMode::Values | StreamMode::Updates;
        if self.values || self.checkpoints || self.debug {
            s = s | StreamMode::Checkpoints;
        }
        if self.messages {
            s = s | StreamMode::Messages;
        }
        if self.custom {
            s = s | StreamMode::Custom;
        }
        if self.tasks || self.debug {
            s = s | StreamMode::Tasks;
        }
        s
    }
}

/// The body of `POST /threads/{id}/runs[/stream|/wait]`. Unknown keys are ignored
/// (clients send more than this server uses).
#[derive(Debug, Deserialize)]
pub(crate) struct RunCreate {
    pub(crate) assistant_id: String,
    #[serde(default)]
    pub(crate) input: Option<Value>,
    #[serde(default)]
    pub(crate) command: Option<Value>,
    #[serde(default)]
    pub(crate) stream_mode: Option<Value>,
    #[serde(default)]
    pub(crate) stream_subgraphs: bool,
    #[serde(default)]
    pub(crate) stream_resumable: bool,
    #[serde(default)]
    pub(crate) config: Option<Value>,
    #[serde(default)]
    pub(crate) context: Option<Value>,
    #[serde(default)]
    pub(crate) metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub(crate) checkpoint: Option<Value>,
    #[serde(default)]
    pub(crate) checkpoint_id: Option<String>,
    #[serde(default)]
    pub(crate) interrupt_before: Option<Value>,
    #[serde(default)]
    pub(crate) interrupt_after: Option<Value>,
    #[serde(default)]
    pub(crate) multitask_strategy: Option<String>,
    #[serde(default)]
    pub(crate) if_not_exists: Option<String>,
    #[serde(default)]
    pub(crate) on_disconnect: Option<String>,
    /// Set by the server only (never read from a request): the run applies the
    /// declared timeout answers of expired reviews as of this time (ms).
    #[serde(skip)]
    pub(crate) timeout_at: Option<u64>,
}

/// A run, parsed and checked against its graph.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub(crate) input: JsonInput,
    pub(crate) modes: Modes,
    pub(crate) options: JsonRunOptions,
    pub(crate) checkpoint: Option<CheckpointId>,
    pub(crate) recursion_limit: Option<usize>,
    pub(crate) context: Option<Value>,
    pub(crate) resumable: bool,
}

impl RunSpec {
    pub(crate) fn has_resume(&self) -> bool {
        matches!(&self.input, JsonInput::Command(c) if c.resume.is_some())
    }

    /// Parses the stored arguments of a run (`kwargs`) and checks them against the
    /// graph: the same code for new and queued runs.
    /// The run a request (its stored kwargs) asks for; a resume is answered as
    /// `identity` (its id and roles are checked against governed reviews and written in
    /// the decision records).
    pub(crate) fn from_kwargs(
        reg: &Registered,
        kwargs: &Value,
        identity: Option<&Identity>,
    ) -> Result<RunSpec, ApiError> {
        let command = non_null(kwargs.get("command"));
        // The JS SDK's `useStream` (Agent Chat UI) sends `input: {}` with every
        // command: an empty input next to a command is no input.
        let input = non_null(kwargs.get("input"))
            .filter(|i| command.is_none() || i.as_object().is_none_or(|o| !o.is_empty()));
        let input = match (input, command) {
            (Some(_), Some(_)) => {
                return Err(ApiError::Unprocessable(
                    "give either `input` (new input) or `command` (resume, update, goto), not both"
                        .into(),
                ));
            }
            (Some(i), None) => JsonInput::Update(i.clone()),
            (None, Some(c)) => {
                let mut command = parse_command(c)?;
                command.reviewer = identity.cloned();
                command.timeout_at = kwargs.get(TIMEOUT_KEY).and_then(Value::as_u64);
                JsonInput::Command(command)
            }
            (None, None) => JsonInput::Continue,
        };
        let (modes, _) = Modes::parse(kwargs.get("stream_mode"))?;
        let options = JsonRunOptions::new(modes.runtime()).breakpoints(
            selection("interrupt_before", kwargs.get("interrupt_before"))?,
            selection("interrupt_after", kwargs.get("interrupt_after"))?,
        );
        reg.graph.check(&input, &options)?;
        let checkpoint = match non_null(kwargs.get("checkpoint")) {
            None => None,
            Some(c) => Some(parse_checkpoint(c)?),
        };
        let recursion_limit = match kwargs.pointer("/config/recursion_limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::Unprocessable(format!(
                            "config.recursion_limit must be a positive integer, got {v}"
                        ))
                    })?,
            ),
        };
        Ok(RunSpec {
            input,
            modes,
            options,
            checkpoint,
            recursion_limit,
            context: non_null(kwargs.get("context"))
                .filter(|c| c.as_object().is_none_or(|o| !o.is_empty()))
                .cloned(),
            resumable: kwargs
                .get("resumable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

pub(crate) fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

pub(crate) fn selection(what: &str, v: Option<&Value>) -> Result<Option<NodeSelection>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "*" => Ok(Some(NodeSelection::All)),
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|names| Some(NodeSelection::Named(names)))
            .ok_or_else(|| {
                ApiError::Unprocessable(format!("{what} must be \"*\" or a list of node names"))
            }),
        Some(_) => Err(ApiError::Unprocessable(format!(
            "{what} must be \"*\" or a list of node names"
        ))),
    }
}

/// A checkpoint given as `{"checkpoint_id": ..}` or as the id itself.
pub(crate) fn parse_checkpoint(v: &Value) -> Result<CheckpointId, ApiError> {
    let id = match v {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("checkpoint_id").and_then(Value::as_str),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "checkpoint must be {{\"checkpoint_id\": \"<uuid>\"}} or a checkpoint id, got {v}"
        ))
    })?;
    id.parse()
        .map_err(|e: hitl_runtime::ParseIdError| ApiError::Unprocessable(e.to_string()))
}

/// A command: `{"resume": .., "update": .., "goto": "node" | ["node", ..]}`.
///
/// `resume` is a map of answers by interrupt id when it is a non-empty object whose
/// keys are all interrupt ids (32 hexadecimal digits); otherwise it is one answer for
/// the only pending interrupt. Ids that are not pending are an error (the runtime
/// names the pending ones), never ignored.
pub(crate) fn parse_command(v: &Value) -> Result<JsonCommand, ApiError> {
    let Value::Object(o) = v else {
        return Err(ApiError::Unprocessable(format!(
            "command must be an object {{\"resume\": .., \"update\": .., \"goto\": ..}}, got {v}"
        )));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "resume" | "update" | "goto"))
    {
        return Err(ApiError::Unprocessable(format!(
            "command has an unknown key `{k}`; it takes `resume`, `update` and `goto`"
        )));
    }
    let resume = non_null(o.get("resume")).map(|r| match r {
        Value::Object(m) if !m.is_empty() => {
            let ids: Option<Vec<(InterruptId, Value)>> = m
                .iter()
                .map(|(k, v)| k.parse::<InterruptId>().ok().map(|id| (id, v.clone())))
                .collect();
            match ids {
                Some(list) => JsonResume::ById(list),
                None => JsonResume::Single(r.clone()),
            }
        }
        _ => JsonResume::Single(r.clone()),
    });
    let goto = match non_null(o.get("goto")) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| g.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::Unprocessable(
                    "command.goto takes node names (a string or a list of strings); `Send` objects are not supported".into(),
                )
            })?,
        Some(_) => {
            return Err(ApiError::Unprocessable(
                "command.goto takes node names (a string or a list of strings); `Send` objects are not supported".into(),
            ));
        }
    };
    let command = JsonCommand {
        resume,
        update: non_null(o.get("update")).cloned(),
        goto,
        reviewer: None,
        timeout_at: None,
    };
    if command.resume.is_none() && command.update.is_none() && command.goto.is_empty() {
        return Err(ApiError::Unprocessable(
            "command is empty: give it `resume`, `update` or `goto` (to continue a paused thread, send `input: null`)".into(),
        ));
    }
    Ok(command)
}

/// The arguments recorded with a run, as the API shows them (`kwargs`).
pub(crate) fn kwargs_of(req: &RunCreate, stream_modes: &[String], config: Value) -> Value {
    let checkpoint = match (&req.checkpoint, &req.checkpoint_id) {
        (Some(c), _) if !c.is_null() => c.clone(),
        (_, Some(id)) => json!({ "checkpoint_id": id }),
        _ => Value::Null,
    };
    let mut kwargs = json!({
        "input": req.input,
        "command": req.command,
        "config": config,
        "context": req.context.clone().unwrap_or_else(|| json!({})),
        "stream_mode": stream_modes,
        "interrupt_before": req.interrupt_before,
        "interrupt_after": req.interrupt_after,
        "checkpoint": checkpoint,
        "webhook": null,
        "feedback_keys": null,
        "temporary": false,
        "subgraphs": req.stream_subgraphs,
        "resumable": req.stream_resumable,
        "checkpoint_during": true,
        "durability": "async",
    });
    if let (Some(at), Value::Object(o)) = (req.timeout_at, &mut kwargs) {
        o.insert(TIMEOUT_KEY.into(), json!(at));
    }
    kwargs
}

/// The kwargs key of a run that applies timeout answers (set by the server's expiry
/// task; requests cannot set it).
const TIMEOUT_KEY: &str = "hitl_timeout_at";
