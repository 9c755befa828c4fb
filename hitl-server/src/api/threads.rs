//! `/threads`: records, state, history and state updates.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitl_runtime::checkpoint::ListFilter;
use hitl_runtime::{CheckpointError, CheckpointId, RunConfig, RunError};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{App, Body422, json_with, pagination, query_get, query_pairs, uuid_param, value_usize};
use crate::error::ApiError;
use crate::graph::{CallError, JsonSnapshot};
use crate::live::CancelAction;
use crate::server::{Inner, Registered};
use crate::store::{IfExists, ThreadQuery, ThreadRecord, ThreadSort, ThreadStatus, ThreadUpdate};
use crate::wire;

/// A thread by path id: 422 for a malformed id, 404 for an unknown one.
pub(crate) async fn load(inner: &Inner, raw: &str) -> Result<ThreadRecord, ApiError> {
    let id = uuid_param("thread", raw)?;
    inner
        .store
        .get_thread(&id)
        .await?
        .ok_or_else(|| ApiError::thread_not_found(&id))
}

pub(crate) fn graph_of<'a>(inner: &'a Inner, t: &ThreadRecord) -> Option<&'a Registered> {
    t.graph_id.as_deref().and_then(|g| inner.graph(g))
}

/// The thread's state at its head, if it has one.
async fn head(inner: &Inner, t: &ThreadRecord) -> Result<Option<JsonSnapshot>, ApiError> {
    match graph_of(inner, t) {
        Some(g) => Ok(g
            .graph
            .state(&RunConfig::thread(t.thread_id.clone()))
            .await?),
        None => Ok(None),
    }
}

async fn thread_response(inner: &Inner, t: &ThreadRecord) -> Result<wire::ThreadJson, ApiError> {
    let state = head(inner, t).await?;
    Ok(wire::thread_json(t, t.status.as_str(), state.as_ref()))
}

#[derive(Deserialize)]
pub(crate) struct Create {
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    if_exists: Option<String>,
}

/// `POST /threads` → 200 with the thread (409 if the id exists, unless
/// `if_exists: "do_nothing"`).
pub(crate) async fn create(
    State(inner): App,
    Body422(body): Body422<Create>,
) -> Result<Response, ApiError> {
    let id = match &body.thread_id {
        Some(id) => uuid_param("thread", id)?,
        None => uuid::Uuid::now_v7().to_string(),
    };
    let if_exists = match body.if_exists.as_deref() {
        None | Some("raise") => IfExists::Raise,
        Some("do_nothing") => IfExists::DoNothing,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "if_exists must be `raise` or `do_nothing`, got `{other}`"
            )));
        }
    };
    let t = inner
        .store
        .create_thread(
            ThreadRecord::new(id, body.metadata.unwrap_or_default()),
            if_exists,
        )
        .await?;
    Ok(axum::Json(thread_response(&inner, &t).await?).into_response())
}

/// `GET /threads/{id}`.
pub(crate) async fn get(
    State(inner): App,
    Path(thread_id): Path<String>,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    Ok(axum::Json(thread_response(&inner, &t).await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Patch {
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// `PATCH /threads/{id}`: metadata is merged.
pub(crate) async fn patch(
    State(inner): App,
    Path(thread_id): Path<String>,
    Body422(body): Body422<Patch>,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    let t = inner
        .store
        .update_thread(
            &t.thread_id,
            ThreadUpdate::default().metadata(body.metadata.unwrap_or_default()),
        )
        .await?
        .ok_or_else(|| ApiError::thread_not_found(&t.thread_id))?;
    Ok(axum::Json(thread_response(&inner, &t).await?).into_response())
}

/// `DELETE /threads/{id}` → 204. Active runs are cancelled first; the thread's
/// checkpoints are deleted from its graph's checkpointer.
pub(crate) async fn delete(
    State(inner): App,
    Path(thread_id): Path<String>,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    for run in inner.store.active_runs(&t.thread_id).await? {
        crate::runs::cancel(&inner, &run, CancelAction::Interrupt, true).await?;
    }
    if let Some(saver) = graph_of(&inner, &t).and_then(|g| g.graph.checkpointer()) {
        saver
            .delete_thread(&t.thread_id)
            .await
            .map_err(|e| ApiError::from(RunError::from(e)))?;
    }
    if !inner.store.delete_thread(&t.thread_id).await? {
        return Err(ApiError::thread_not_found(&t.thread_id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<Value>,
    #[serde(default)]
    offset: Option<Value>,
    #[serde(default)]
    sort_by: Option<String>,
    #[serde(default)]
    sort_order: Option<String>,
    #[serde(default)]
    values: Option<Map<String, Value>>,
}

/// `POST /threads/search`: metadata containment, status, ids; newest first by
/// default. Results carry `values` and `interrupts`.
pub(crate) async fn search(
    State(inner): App,
    Body422(body): Body422<Search>,
) -> Result<Response, ApiError> {
    let sort_by = match body.sort_by.as_deref() {
        None | Some("created_at") => ThreadSort::CreatedAt,
        Some("updated_at") => ThreadSort::UpdatedAt,
        Some("thread_id") => ThreadSort::ThreadId,
        Some("status") => ThreadSort::Status,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "sort_by must be one of created_at, updated_at, thread_id, status; got `{other}`"
            )));
        }
    };
    let descending = match body.sort_order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "sort_order must be `asc` or `desc`, got `{other}`"
            )));
        }
    };
    let q = ThreadQuery {
        metadata: body.metadata.unwrap_or_default(),
        status: body
            .status
            .as_deref()
            .map(str::parse::<ThreadStatus>)
            .transpose()
            .map_err(ApiError::Unprocessable)?,
        ids: body
            .ids
            .map(|ids| ids.iter().map(|i| uuid_param("thread", i)).collect())
            .transpose()?,
        sort_by,
        descending,
        limit: value_usize(body.limit.as_ref(), "limit", 10)?,
        offset: value_usize(body.offset.as_ref(), "offset", 0)?,
    };
    if body.values.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::Unprocessable(
            "searching threads by `values` is not supported by this server; filter by `metadata`, `status` or `ids`".into(),
        ));
    }
    let page = inner.store.search_threads(&q).await?;
    let mut out = Vec::with_capacity(page.threads.len());
    for t in &page.threads {
        out.push(thread_response(&inner, t).await?);
    }
    Ok(json_with(
        StatusCode::OK,
        pagination(page.total, q.offset, out.len()),
        &out,
    ))
}

fn state_at_error(e: CallError) -> ApiError {
    match e {
        CallError::Run(RunError::Checkpoint(CheckpointError::NotFound { .. })) => {
            ApiError::NotFound(e.to_string())
        }
        other => other.into(),
    }
}

async fn state_response(
    inner: &Arc<Inner>,
    thread_id: &str,
    at: Option<CheckpointId>,
) -> Result<Response, ApiError> {
    let t = load(inner, thread_id).await?;
    let Some(g) = graph_of(inner, &t) else {
        if let Some(id) = at {
            return Err(ApiError::NotFound(format!(
                "thread `{}` has no checkpoint {id}",
                t.thread_id
            )));
        }
        return Ok(axum::Json(wire::empty_state_json()).into_response());
    };
    let mut cfg = RunConfig::thread(t.thread_id.clone());
    if let Some(id) = at {
        cfg = cfg.at_checkpoint(id);
    }
    match g.graph.state(&cfg).await.map_err(state_at_error)? {
        Some(s) => Ok(axum::Json(wire::state_json(&t.thread_id, &s)).into_response()),
        None => Ok(axum::Json(wire::empty_state_json()).into_response()),
    }
}

fn checkpoint_param(s: &str) -> Result<CheckpointId, ApiError> {
    s.parse()
        .map_err(|e: hitl_runtime::ParseIdError| ApiError::Unprocessable(e.to_string()))
}

/// `GET /threads/{id}/state` (`?subgraphs=` is accepted; subgraph states are not
/// expanded).
pub(crate) async fn state(
    State(inner): App,
    Path(thread_id): Path<String>,
) -> Result<Response, ApiError> {
    state_response(&inner, &thread_id, None).await
}

/// `GET /threads/{id}/state/{checkpoint_id}`.
pub(crate) async fn state_at(
    State(inner): App,
    Path((thread_id, checkpoint_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let at = checkpoint_param(&checkpoint_id)?;
    state_response(&inner, &thread_id, Some(at)).await
}

#[derive(Deserialize)]
pub(crate) struct StateAt {
    checkpoint: Value,
}

/// `POST /threads/{id}/state/checkpoint` `{"checkpoint": {"checkpoint_id": ..}}`.
pub(crate) async fn state_at_posted(
    State(inner): App,
    Path(thread_id): Path<String>,
    Body422(body): Body422<StateAt>,
) -> Result<Response, ApiError> {
    let at = checkpoint_from(&body.checkpoint)?;
    state_response(&inner, &thread_id, at).await
}

fn checkpoint_from(v: &Value) -> Result<Option<CheckpointId>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => checkpoint_param(s).map(Some),
        Value::Object(o) => match o.get("checkpoint_id") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => checkpoint_param(s).map(Some),
            Some(other) => Err(ApiError::Unprocessable(format!(
                "checkpoint_id must be a string, got {other}"
            ))),
        },
        other => Err(ApiError::Unprocessable(format!(
            "a checkpoint is {{\"checkpoint_id\": \"<uuid>\"}}, got {other}"
        ))),
    }
}

#[derive(Deserialize)]
pub(crate) struct History {
    #[serde(default)]
    limit: Option<Value>,
    #[serde(default)]
    before: Option<Value>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    checkpoint: Option<Value>,
}

async fn history_response(
    inner: &Arc<Inner>,
    thread_id: &str,
    body: History,
) -> Result<Response, ApiError> {
    let t = load(inner, thread_id).await?;
    let filter = ListFilter {
        before: body
            .before
            .as_ref()
            .map(checkpoint_from)
            .transpose()?
            .flatten(),
        limit: Some(value_usize(body.limit.as_ref(), "limit", 10)?),
        metadata: body.metadata.unwrap_or_default(),
    };
    let Some(g) = graph_of(inner, &t) else {
        return Ok(axum::Json(Vec::<Value>::new()).into_response());
    };
    let mut cfg = RunConfig::thread(t.thread_id.clone());
    if let Some(at) = body
        .checkpoint
        .as_ref()
        .map(checkpoint_from)
        .transpose()?
        .flatten()
    {
        cfg = cfg.at_checkpoint(at);
    }
    let states = g.graph.history(&cfg, &filter).await?;
    let out: Vec<_> = states
        .iter()
        .map(|s| wire::state_json(&t.thread_id, s))
        .collect();
    Ok(axum::Json(out).into_response())
}

/// `POST /threads/{id}/history` `{limit, before, metadata}`: newest first.
pub(crate) async fn history(
    State(inner): App,
    Path(thread_id): Path<String>,
    Body422(body): Body422<History>,
) -> Result<Response, ApiError> {
    history_response(&inner, &thread_id, body).await
}

/// `GET /threads/{id}/history?limit=&before=`.
pub(crate) async fn history_get(
    State(inner): App,
    Path(thread_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_pairs(raw.as_deref());
    let limit = query_get(&q, "limit")
        .map(|l| {
            l.parse::<usize>().map_err(|_| {
                ApiError::Unprocessable(format!("limit must be a non-negative integer, got `{l}`"))
            })
        })
        .transpose()?;
    let body = History {
        limit: limit.map(Value::from),
        before: query_get(&q, "before").map(Value::from),
        metadata: None,
        checkpoint: None,
    };
    history_response(&inner, &thread_id, body).await
}

#[derive(Deserialize)]
pub(crate) struct UpdateState {
    #[serde(default)]
    values: Value,
    #[serde(default)]
    as_node: Option<String>,
    #[serde(default)]
    checkpoint: Option<Value>,
    #[serde(default)]
    checkpoint_id: Option<String>,
}

/// `POST /threads/{id}/state` `{values, as_node?, checkpoint?}`: writes a checkpoint
/// as if `as_node` had returned `values`. 409 while a run is active.
pub(crate) async fn update_state(
    State(inner): App,
    Path(thread_id): Path<String>,
    Body422(body): Body422<UpdateState>,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    let g = match &t.graph_id {
        Some(id) => inner.graph(id).ok_or_else(|| {
            ApiError::Conflict(format!(
                "thread {} holds the state of graph `{id}`, which this server does not serve",
                t.thread_id
            ))
        })?,
        None if inner.graphs.len() == 1 => &inner.graphs[0],
        None => {
            return Err(ApiError::Conflict(format!(
                "thread {} has not run yet, so its graph is not known; start a run first",
                t.thread_id
            )));
        }
    };
    let _admission = inner.admission(&t.thread_id).lock().await;
    if !inner.store.active_runs(&t.thread_id).await?.is_empty() {
        return Err(ApiError::busy());
    }
    let mut cfg = RunConfig::thread(t.thread_id.clone());
    let at = match (&body.checkpoint, &body.checkpoint_id) {
        (Some(c), _) if !c.is_null() => checkpoint_from(c)?,
        (_, Some(id)) => Some(checkpoint_param(id)?),
        _ => None,
    };
    if let Some(at) = at {
        cfg = cfg.at_checkpoint(at);
    }
    let id = g
        .graph
        .update_state(&cfg, body.values, body.as_node.as_deref())
        .await
        .map_err(state_at_error)?;
    let state = g
        .graph
        .state(&RunConfig::thread(t.thread_id.clone()))
        .await?;
    let status = match &state {
        Some(s) if !s.next.is_empty() => ThreadStatus::Interrupted,
        _ => ThreadStatus::Idle,
    };
    let mut bind = Map::new();
    bind.insert("graph_id".into(), Value::from(g.graph_id.clone()));
    bind.insert("assistant_id".into(), Value::from(g.assistant_id.clone()));
    inner
        .store
        .update_thread(
            &t.thread_id,
            ThreadUpdate::default()
                .metadata(bind)
                .graph(g.graph_id.clone())
                .status(status)
                .error(None)
                .state_changed(),
        )
        .await?;
    Ok(axum::Json(wire::update_state_json(&t.thread_id, id)).into_response())
}
