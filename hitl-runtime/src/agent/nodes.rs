//! The agent's nodes: the model call, the hooks, the routes after the model, and the
//! tools (one task per call).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::*;

/// The tool calls of the last model turn that no tool message answers yet.
pub(crate) fn unanswered_calls(messages: &[Message]) -> Vec<&ToolCall> {
    let Some(i) = messages.iter().rposition(|m| m.as_assistant().is_some()) else {
        return Vec::new();
    };
    let ai = messages[i].as_assistant().expect("found above");
    let answered: HashSet<&str> = messages[i + 1..]
        .iter()
        .filter_map(|m| m.as_tool().map(|t| t.tool_call_id.as_str()))
        .collect();
    ai.tool_calls
        .iter()
        .filter(|c| !answered.contains(c.id.as_deref().unwrap_or("")))
        .collect()
}

/// Where the run goes after the model turn: the pending tool calls (one task each),
/// back to the loop if every call already has a result, or the exit if there were
/// no calls.
fn route_after_model(
    shared: &Shared,
    state: &[Message],
    update: &[Message],
) -> Vec<Goto<AgentState>> {
    let wiring = shared.wiring();
    let (ai, rest_of_state, ai_in_update): (Option<&AssistantMessage>, &[Message], Option<usize>) =
        match update.iter().rposition(|m| m.as_assistant().is_some()) {
            Some(i) => (update[i].as_assistant(), &[], Some(i)),
            None => match state.iter().rposition(|m| m.as_assistant().is_some()) {
                Some(i) => (state[i].as_assistant(), &state[i + 1..], None),
                None => (None, &[], None),
            },
        };
    let Some(ai) = ai.filter(|ai| !ai.tool_calls.is_empty() || !ai.invalid_tool_calls.is_empty())
    else {
        return vec![wiring.exit()];
    };
    let after_in_update = match ai_in_update {
        Some(i) => &update[i + 1..],
        None => update,
    };
    let answered: HashSet<&str> = rest_of_state
        .iter()
        .chain(after_in_update)
        .filter_map(|m| m.as_tool().map(|t| t.tool_call_id.as_str()))
        .collect();
    let pending: Vec<Goto<AgentState>> = ai
        .tool_calls
        .iter()
        .filter(|c| !answered.contains(c.id.as_deref().unwrap_or("")))
        .map(|c| {
            Goto::Send(SendTo::new(
                wiring.tools,
                &ToolTask {
                    call: c.clone(),
                    message_id: ai.id.clone(),
                },
            ))
        })
        .collect();
    if pending.is_empty() {
        vec![Goto::Node(wiring.loop_entry())]
    } else {
        pending
    }
}

/// The node after a hook, or where its jump goes.
fn after_hook(
    shared: &Shared,
    hook: Hook,
    position: usize,
    state: &AgentState,
    output: &HookOutput,
) -> Vec<Goto<AgentState>> {
    let wiring = shared.wiring();
    let update_messages = output
        .update
        .as_ref()
        .and_then(|u| u.messages.as_deref())
        .unwrap_or(&[]);
    if let Some(jump) = output.jump_to {
        return match jump {
            JumpTo::Model => vec![Goto::Node(wiring.loop_entry())],
            JumpTo::End => vec![wiring.exit()],
            JumpTo::Tools => route_after_model(shared, &state.messages, update_messages),
        };
    }
    let next_in =
        |chain: &[NodeHandle<AgentState>], order: Vec<usize>| -> Option<NodeHandle<AgentState>> {
            let i = order.iter().position(|p| *p == position)?;
            chain.get(i + 1).copied()
        };
    let positions = |hook: Hook, reverse: bool| -> Vec<usize> {
        let mut v: Vec<usize> = shared
            .middleware
            .iter()
            .enumerate()
            .filter(|(_, m)| hook.enabled(m.hooks()))
            .map(|(i, _)| i)
            .collect();
        if reverse {
            v.reverse();
        }
        v
    };
    match hook {
        Hook::BeforeAgent => vec![Goto::Node(
            next_in(&wiring.before_agent, positions(hook, false))
                .unwrap_or_else(|| wiring.loop_entry()),
        )],
        Hook::BeforeModel => vec![Goto::Node(
            next_in(&wiring.before_model, positions(hook, false)).unwrap_or(wiring.model),
        )],
        Hook::AfterModel => match next_in(&wiring.after_model, positions(hook, true)) {
            Some(next) => vec![Goto::Node(next)],
            None => route_after_model(shared, &state.messages, update_messages),
        },
        Hook::AfterAgent => match next_in(&wiring.after_agent, positions(hook, true)) {
            Some(next) => vec![Goto::Node(next)],
            None => vec![Goto::End],
        },
    }
}

fn command(update: Option<AgentStateUpdate>, goto: Vec<Goto<AgentState>>) -> Command<AgentState> {
    let mut c = Command::new();
    if let Some(u) = update {
        c = c.with_update(u);
    }
    for g in goto {
        c = c.goto(g);
    }
    c
}

pub(super) async fn run_hook(
    shared: &Shared,
    middleware: &dyn Middleware,
    hook: Hook,
    position: usize,
    state: Arc<AgentState>,
    cx: NodeContext,
) -> Result<NodeOutput<AgentState>, NodeError> {
    let output = match hook {
        Hook::BeforeAgent => middleware.before_agent(&state, &cx).await?,
        Hook::BeforeModel => middleware.before_model(&state, &cx).await?,
        Hook::AfterModel => middleware.after_model(&state, &cx).await?,
        Hook::AfterAgent => middleware.after_agent(&state, &cx).await?,
    };
    let goto = after_hook(shared, hook, position, &state, &output);
    Ok(command(output.update, goto).into())
}

pub(super) async fn run_model(
    shared: &Shared,
    state: Arc<AgentState>,
    cx: NodeContext,
) -> Result<NodeOutput<AgentState>, NodeError> {
    let request = ModelRequest {
        system_prompt: shared.system_prompt.as_deref().map(Cow::Borrowed),
        messages: Cow::Borrowed(&state.messages),
        tools: Cow::Borrowed(&shared.specs),
        tool_choice: None,
        settings: ModelSettings::default(),
    };
    let next = ModelNext {
        chain: &shared.middleware,
        model: &*shared.model,
        cx: &cx,
    };
    let mut ai = next.run(request).await?;
    let answers = screen(&mut ai, &state.messages, &shared.tools);
    // The answer's values must not nest too deep (storage adds a few levels around
    // them, well within what it can read back). The calls' arguments are not among
    // them: `screen` kept the calls whose arguments nest too deep as text.
    let values = || {
        ai.response_metadata
            .values()
            .chain(ai.usage_metadata.as_ref())
            .chain(match &ai.content {
                Content::Blocks(blocks) => &blocks[..],
                Content::Text(_) => &[],
            })
    };
    if values().any(crate::schema::too_deep) {
        let depth = values().map(crate::json_depth).max().unwrap_or(0);
        return Err(NodeError::msg(format!(
            "the model's answer nests {depth} levels deep; at most {} are accepted",
            crate::MAX_JSON_DEPTH
        )));
    }
    let mut messages = vec![Message::Assistant(ai)];
    messages.extend(answers);
    let wiring = shared.wiring();
    let goto = match wiring.after_model.first() {
        Some(first) => vec![Goto::Node(*first)],
        None => route_after_model(shared, &state.messages, &messages),
    };
    Ok(command(Some(AgentStateUpdate::default().messages(messages)), goto).into())
}

/// The agent owns message and call ids, and screens calls before anything sees them.
///
/// - The message's id, and each call's, is replaced by a fresh one when it is missing,
///   empty, or already used (in the history, or earlier in this turn): models repeat
///   ids, and every decision and every result must bind to exactly one call.
/// - A call to a tool the agent does not have, or whose arguments the tool's own
///   decoder rejects, is answered at once with an error the model can read (LangChain's
///   texts); so is a call whose arguments are not JSON. None of them is reviewed or run.
///
/// Returns the answers, in call order.
fn screen(ai: &mut AssistantMessage, history: &[Message], tools: &ToolSet) -> Vec<Message> {
    let fresh_call_id = || format!("call_{}", uuid::Uuid::now_v7().simple());
    // One pass over the history, no hashing and no copies: the ids of this turn are
    // few, and string comparisons stop at the first differing length or byte, so a
    // long conversation is scanned at memory speed (as the messages reducer does).
    let given: Vec<Option<&str>> = ai
        .tool_calls
        .iter()
        .map(|c| c.id.as_deref())
        .chain(ai.invalid_tool_calls.iter().map(|c| c.id.as_deref()))
        .collect();
    let mut call_used = vec![false; given.len()];
    let mut message_used = false;
    let mut mark = |id: &str| {
        for (used, g) in call_used.iter_mut().zip(&given) {
            *used |= *g == Some(id);
        }
    };
    for m in history {
        message_used |= m.id().is_some() && m.id() == ai.id.as_deref();
        match m {
            Message::Assistant(a) => {
                a.tool_calls
                    .iter()
                    .filter_map(|c| c.id.as_deref())
                    .for_each(&mut mark);
                a.invalid_tool_calls
                    .iter()
                    .filter_map(|c| c.id.as_deref())
                    .for_each(&mut mark);
            }
            Message::Tool(t) => mark(&t.tool_call_id),
            _ => {}
        }
    }
    // Earlier in this turn.
    for i in 0..given.len() {
        call_used[i] |= given[..i].iter().any(|g| g.is_some() && *g == given[i]);
    }
    drop(given);
    if message_used || ai.id.as_deref().is_none_or(str::is_empty) {
        ai.id = Some(crate::ids::new_message_id());
    }
    let ids = ai
        .tool_calls
        .iter_mut()
        .map(|c| &mut c.id)
        .chain(ai.invalid_tool_calls.iter_mut().map(|c| &mut c.id));
    for (id, used) in ids.zip(call_used) {
        if used || id.as_deref().is_none_or(str::is_empty) {
            *id = Some(fresh_call_id());
        }
    }
    let mut answers = Vec::new();
    // Arguments too deep to store and read back are kept as text, as an invalid call.
    let (deep, kept): (Vec<ToolCall>, Vec<ToolCall>) = std::mem::take(&mut ai.tool_calls)
        .into_iter()
        .partition(|c| crate::schema::too_deep(&c.args));
    ai.tool_calls = kept;
    let mut deep_calls = Vec::new();
    for call in deep {
        let id = call.id.unwrap_or_default();
        let error = format!(
            "the arguments nest {} levels deep; at most {} are accepted",
            crate::json_depth(&call.args),
            crate::MAX_JSON_DEPTH
        );
        answers.push(Message::tool_error(
            id.clone(),
            call.name.clone(),
            format!(
                "Error: the arguments of tool call '{id}' to '{}' cannot be used: {error}. \
                 The tool did not run; please send simpler arguments.",
                call.name
            ),
        ));
        deep_calls.push(InvalidToolCall::new(
            call.name,
            call.args.to_string(),
            id,
            error,
        ));
    }
    for call in &ai.tool_calls {
        let id = call.id.clone().unwrap_or_default();
        let problem = match tools.get(&call.name) {
            None => Some(texts::unknown_tool(&call.name, tools.names())),
            Some(tool) => match tool.check_args(&call.args) {
                Ok(()) => None,
                Err(ToolError::InvalidArgs { message, .. }) => {
                    Some(texts::invalid_args(&call.name, &call.args, &message))
                }
                Err(other) => Some(texts::invalid_args(
                    &call.name,
                    &call.args,
                    &other.to_string(),
                )),
            },
        };
        if let Some(text) = problem {
            answers.push(Message::tool_error(id, call.name.clone(), text));
        }
    }
    answers.extend(ai.invalid_tool_calls.iter().map(invalid_call_answer));
    ai.invalid_tool_calls.extend(deep_calls);
    answers
}

/// The error tool message answering a call the model made with arguments that are
/// not JSON, so that it can correct itself on its next turn.
fn invalid_call_answer(call: &InvalidToolCall) -> Message {
    let id = call.id.clone().unwrap_or_default();
    let name = call.name.clone().unwrap_or_default();
    let error = call.error.as_deref().unwrap_or("they do not parse");
    Message::tool_error(
        id.clone(),
        name.clone(),
        format!(
            "Error: the arguments of tool call '{id}' to '{name}' are not valid JSON: {error}. \
             The tool did not run; please fix the arguments and try again."
        ),
    )
}

/// The text of a tool's output: strings as they are, nothing for null, JSON otherwise.
pub(crate) fn output_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(super) async fn run_tools(
    shared: &Shared,
    state: Arc<AgentState>,
    cx: NodeContext,
) -> Result<NodeOutput<AgentState>, NodeError> {
    let task: ToolTask = cx.input()?;
    let call_id = task.call.id.clone().unwrap_or_default();
    let request = ToolCallRequest {
        call: task.call,
        message_id: task.message_id.as_deref(),
        state: &state,
        tools: &shared.tools,
        cx: &cx,
    };
    let (name, result) = {
        let name = request.call.name.clone();
        let run = ToolNext {
            chain: &shared.middleware,
        }
        .run(request);
        let timeout = shared
            .tool_timeouts
            .get(&name)
            .copied()
            .or(shared.tool_timeout);
        let result = match timeout {
            Some(after) => tokio::time::timeout(after, run).await.unwrap_or_else(|_| {
                Err(ToolError::Timeout {
                    tool: name.clone(),
                    after,
                })
            }),
            None => run.await,
        };
        (name, result)
    };
    let (content, status) = match result {
        Ok(value) => (output_text(&value), ToolStatus::Success),
        Err(ToolError::Interrupted) => return Err(crate::error::Interrupted.into()),
        Err(e) => (e.to_string(), ToolStatus::Error),
    };
    let executed = state
        .reviewed_tool_calls
        .get(&call_id)
        .map_or(name, |r| r.action.name.clone());
    let message = Message::Tool(ToolMessage {
        content: Content::Text(content),
        id: None,
        name: Some(executed),
        tool_call_id: call_id,
        status,
    });
    let goto = vec![Goto::Node(shared.wiring().loop_entry())];
    Ok(command(
        Some(AgentStateUpdate::default().messages(vec![message])),
        goto,
    )
    .into())
}
