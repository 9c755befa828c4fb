//! The reviewer inbox: a web page at `/inbox` where people answer pending reviews.
//!
//! The page is plain HTML, CSS and a JavaScript module embedded in the binary (no
//! bundler, no build step). It signs in with a bearer token the server's
//! authenticator accepts, lists what waits for a human with
//! `GET /inbox/api/pending` (only what the reviewer's roles allow), and answers through
//! the ordinary run API (`POST /threads/{id}/runs/stream`), so an answer is validated,
//! recorded and streamed like any other.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hitl_runtime::{Governance, RunConfig};
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::server::Inner;
use crate::store::{ThreadQuery, ThreadStatus};

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /inbox`: the page.
pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /inbox/app.js`.
pub(crate) async fn app() -> Response {
    asset("text/javascript; charset=utf-8", APP)
}

/// `GET /inbox/style.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Whether `identity` may answer an interrupt under `governance`.
fn may_answer(identity: &Identity, governance: Option<&Governance>) -> bool {
    governance.is_none_or(|g| g.authorizes(Some(identity)))
}

/// `GET /inbox/api/pending`: every pending interrupt the caller may answer, across
/// assistants, the most urgent (earliest deadline) first, then the newest.
pub(crate) async fn pending(
    State(inner): State<Arc<Inner>>,
    Extension(identity): Extension<Identity>,
) -> Result<Response, ApiError> {
    let query = ThreadQuery {
        status: Some(ThreadStatus::Interrupted),
        limit: 500,
        ..ThreadQuery::default()
    };
    let page = inner.store.search_threads(&query).await?;
    let mut items = Vec::new();
    for thread in page.threads {
        let Some(reg) = thread.graph_id.as_deref().and_then(|g| inner.graph(g)) else {
            continue;
        };
        let Some(state) = reg
            .graph
            .state(&RunConfig::thread(thread.thread_id.clone()))
            .await?
        else {
            continue;
        };
        for i in &state.interrupts {
            if !may_answer(&identity, i.governance.as_ref()) {
                continue;
            }
            // When it was raised, if it says; else when its thread last changed.
            let since = i
                .governance
                .as_ref()
                .map_or(thread.updated_at, |g| g.raised_at as i64 * 1000);
            items.push(json!({
                "thread_id": thread.thread_id,
                "graph_id": reg.graph_id,
                "assistant_id": reg.assistant_id,
                "interrupt_id": i.id.to_string(),
                "type": i.type_name(),
                "node": i.node,
                "value": i.value,
                "response_schema": i.resume_schema.as_deref(),
                "governance": i.governance,
                "approved_by": i.approved_by,
                "waiting_since": crate::time::iso(since),
                "waiting_since_us": since,
            }));
        }
    }
    let deadline = |v: &Value| {
        v.pointer("/governance/expires_at")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
    };
    let since = |v: &Value| v["waiting_since_us"].as_i64().unwrap_or_default();
    items.sort_by(|a, b| {
        deadline(a)
            .cmp(&deadline(b))
            .then_with(|| since(b).cmp(&since(a)))
    });
    Ok(axum::Json(json!({
        "reviewer": {"id": identity.id, "roles": identity.roles},
        "items": items,
    }))
    .into_response())
}
