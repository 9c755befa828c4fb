//! The agent's nodes: the model call, the hooks, the routes after the model, and the
//! tools (one task per call).

/// Where the run goes after the model turn: the pending tool calls (one task each),
/// back to the loop if every call already has a result, or the exit if there were
/// no calls.
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::*;

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
    if ai.id.is_none() {
        ai.id = Some(uuid::Uuid::now_v7().to_string());
    }
    for call in &mut ai.tool_calls {
        if call.id.as_deref().is_none_or(str::is_empty) {
            call.id = Some(format!("call_{}", uuid::Uuid::now_v7().simple()));
        }
    }
    for call in &mut ai.invalid_tool_calls {
        if call.id.as_deref().is_none_or(str::is_empty) {
            call.id = Some(format!("call_{}", uuid::Uuid::now_v7().simple()));
        }
    }
    // Calls that cannot run are answered at once: never reviewed, never run.
    let answers: Vec<Message> = ai
        .invalid_tool_calls
        .iter()
        .map(invalid_call_answer)
        .collect();
    let mut messages = vec![Message::Assistant(ai)];
    messages.extend(answers);
    let wiring = shared.wiring();
    let goto = match wiring.after_model.first() {
        Some(first) => vec![Goto::Node(*first)],
        None => route_after_model(shared, &state.messages, &messages),
    };
    Ok(command(Some(AgentStateUpdate::default().messages(messages)), goto).into())
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
        let result = ToolNext {
            chain: &shared.middleware,
        }
        .run(request)
        .await;
        (name, result)
    };
    let (content, status) = match result {
        Ok(value) => (output_text(&value), ToolStatus::Success),
        Err(ToolError::Interrupted) => return Err(crate::error::Interrupted.into()),
        Err(e) => (e.to_string(), ToolStatus::Error),
    };
    let executed = state
        .edited_tool_calls
        .get(&call_id)
        .map_or(name, |a| a.name.clone());
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
