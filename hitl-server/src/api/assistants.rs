//! `/assistants`: one default assistant per registered graph.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{App, Body422, json_with, pagination, value_usize};
use crate::error::ApiError;
use crate::server::{Inner, Registered};
use crate::store::json_contains;
use crate::time::iso;
use crate::wire::AssistantJson;

fn assistant_json<'a>(inner: &Inner, g: &'a Registered) -> AssistantJson<'a> {
    AssistantJson {
        assistant_id: g.assistant_id.clone(),
        graph_id: &g.graph_id,
        config: json!({}),
        context: json!({}),
        metadata: json!({"created_by": "system"}),
        name: &g.graph_id,
        created_at: iso(inner.started_at),
        updated_at: iso(inner.started_at),
        version: 1,
        description: None,
    }
}

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    graph_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    limit: Option<Value>,
    #[serde(default)]
    offset: Option<Value>,
}

/// `POST /assistants/search`: newest first (the last registered first).
pub(crate) async fn search(
    State(inner): App,
    Body422(q): Body422<Search>,
) -> Result<Response, ApiError> {
    let limit = value_usize(q.limit.as_ref(), "limit", 10)?;
    let offset = value_usize(q.offset.as_ref(), "offset", 0)?;
    let filter = Value::Object(q.metadata.unwrap_or_default());
    let matching: Vec<&Registered> = inner
        .graphs
        .iter()
        .rev()
        .filter(|g| q.graph_id.as_ref().is_none_or(|id| *id == g.graph_id))
        .filter(|g| q.name.as_ref().is_none_or(|n| *n == g.graph_id))
        .filter(|_| json_contains(&json!({"created_by": "system"}), &filter))
        .collect();
    let page: Vec<AssistantJson<'_>> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|g| assistant_json(&inner, g))
        .collect();
    Ok(json_with(
        StatusCode::OK,
        pagination(matching.len(), offset, page.len()),
        &page,
    ))
}

/// `GET /assistants/{id}`: by UUID or graph name.
pub(crate) async fn get(State(inner): App, Path(id): Path<String>) -> Result<Response, ApiError> {
    let g = inner.assistant(&id)?;
    Ok(axum::Json(assistant_json(&inner, g)).into_response())
}

/// `GET /assistants/{id}/schemas`. The schemas are `null` unless the graph provides
/// them ([`JsonGraph::state_schema`](crate::JsonGraph::state_schema)); a
/// `CompiledGraph` does not, as its state type has no `JsonSchema` bound.
pub(crate) async fn schemas(
    State(inner): App,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let g = inner.assistant(&id)?;
    let state = g.graph.state_schema();
    Ok(axum::Json(json!({
        "graph_id": g.graph_id,
        "input_schema": g.graph.input_schema(),
        "output_schema": state,
        "state_schema": state,
        "config_schema": null,
        "context_schema": null,
    }))
    .into_response())
}
