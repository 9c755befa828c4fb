//! `/threads/{id}/runs`: create, stream, wait, list, get, join, join-stream, cancel.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hitl_runtime::RunConfig;
use serde_json::{Value, json};

use super::threads::load;
use super::{
    App, Body422, flag, header_map, json_with, query_get, query_pairs, sse_response, uuid_param,
};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::live::CancelAction;
use crate::runs::{RunCreate, admit};
use crate::server::Inner;
use crate::store::{RunRecord, RunStatus};
use crate::wire;

fn run_path(thread_id: &str, run_id: &str) -> String {
    format!("/threads/{thread_id}/runs/{run_id}")
}

fn locations(thread_id: &str, run_id: &str, location_suffix: &str) -> HeaderMap {
    let base = run_path(thread_id, run_id);
    header_map(&[
        ("location", format!("{base}{location_suffix}")),
        ("content-location", base),
    ])
}

/// `POST /threads/{id}/runs`: a background run → 200 with the run.
pub(crate) async fn create(
    State(inner): App,
    Extension(identity): Extension<Identity>,
    Path(thread_id): Path<String>,
    Body422(req): Body422<RunCreate>,
) -> Result<Response, ApiError> {
    let thread_id = uuid_param("thread", &thread_id)?;
    let admitted = admit(&inner, &identity, &thread_id, req).await?;
    let run = &admitted.run;
    Ok(json_with(
        StatusCode::OK,
        header_map(&[("content-location", run_path(&thread_id, &run.run_id))]),
        &wire::run_json(run),
    ))
}

/// `POST /threads/{id}/runs/stream`: SSE, `metadata` first, closed when the run has
/// ended (and is recorded as ended). `on_disconnect: "cancel"` cancels the run when
/// the client goes away.
pub(crate) async fn stream(
    State(inner): App,
    Extension(identity): Extension<Identity>,
    Path(thread_id): Path<String>,
    Body422(req): Body422<RunCreate>,
) -> Result<Response, ApiError> {
    let thread_id = uuid_param("thread", &thread_id)?;
    let cancel_on_drop = req.on_disconnect.as_deref() == Some("cancel");
    let admitted = admit(&inner, &identity, &thread_id, req).await?;
    let body = Body::from_stream(admitted.live.sse(0, cancel_on_drop));
    Ok(sse_response(
        locations(&thread_id, &admitted.run.run_id, "/stream"),
        body,
    ))
}

/// `POST /threads/{id}/runs/wait`: the final values (with `__interrupt__` at a
/// pause), or `{"__error__": ..}` if the run failed. HTTP 200 either way.
pub(crate) async fn wait(
    State(inner): App,
    Extension(identity): Extension<Identity>,
    Path(thread_id): Path<String>,
    Body422(req): Body422<RunCreate>,
) -> Result<Response, ApiError> {
    let thread_id = uuid_param("thread", &thread_id)?;
    let admitted = admit(&inner, &identity, &thread_id, req).await?;
    Ok(awaited(
        locations(&thread_id, &admitted.run.run_id, "/join"),
        admitted.live,
    ))
}

/// How often a waiting `wait`/`join` writes a newline, so that idle-connection
/// timeouts do not cut long runs (JSON parsers skip leading whitespace).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);

/// A JSON body written when the run ends, preceded by a newline every few seconds
/// while it runs (as the reference server does).
fn awaited(headers: HeaderMap, live: std::sync::Arc<crate::live::Live>) -> Response {
    let body = futures_util::stream::unfold(Some(live), |live| async move {
        let live = live?;
        match tokio::time::timeout(KEEP_ALIVE, live.wait()).await {
            Ok(ending) => {
                let json = serde_json::to_vec(&ending.body).unwrap_or_else(|_| b"null".to_vec());
                Some((Ok::<_, std::convert::Infallible>(Bytes::from(json)), None))
            }
            Err(_) => Some((Ok(Bytes::from_static(b"\n")), Some(live))),
        }
    });
    let mut res = Response::new(Body::from_stream(body));
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    res.headers_mut().extend(headers);
    res
}

/// `GET /threads/{id}/runs?limit=&offset=&status=`: newest first.
pub(crate) async fn list(
    State(inner): App,
    Path(thread_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    let q = query_pairs(raw.as_deref());
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        query_get(&q, key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                ApiError::Unprocessable(format!("{key} must be a non-negative integer, got `{v}`"))
            })
        })
    };
    let status = query_get(&q, "status")
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(ApiError::Unprocessable)?;
    let runs = inner
        .store
        .list_runs(
            &t.thread_id,
            number("limit", 10)?,
            number("offset", 0)?,
            status,
        )
        .await?;
    let out: Vec<_> = runs.iter().map(wire::run_json).collect();
    Ok(axum::Json(out).into_response())
}

async fn load_run(inner: &Inner, thread_id: &str, run_id: &str) -> Result<RunRecord, ApiError> {
    let t = load(inner, thread_id).await?;
    let run_id = uuid_param("run", run_id)?;
    inner
        .store
        .get_run(&t.thread_id, &run_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("Run {run_id} not found in thread {}", t.thread_id))
        })
}

/// `GET /threads/{id}/runs/{run_id}`.
pub(crate) async fn get(
    State(inner): App,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let run = load_run(&inner, &thread_id, &run_id).await?;
    Ok(axum::Json(wire::run_json(&run)).into_response())
}

/// `GET /threads/{id}/runs/{run_id}/join`: waits for the run and returns what
/// `runs/wait` would have. For a run this process no longer remembers, the answer
/// comes from the thread: its pending interrupts, its error, or its values.
pub(crate) async fn join(
    State(inner): App,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut run = load_run(&inner, &thread_id, &run_id).await?;
    let headers = locations(&run.thread_id, &run.run_id, "/join");
    if let Some(live) = inner.lives.get(&run.run_id) {
        return Ok(awaited(headers, live));
    }
    // Run by another process sharing the store: wait for its record to end.
    while run.status.is_active() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Some(live) = inner.lives.get(&run.run_id) {
            // Taken over by this process meanwhile.
            return Ok(awaited(headers, live));
        }
        run = load_run(&inner, &thread_id, &run_id).await?;
    }
    let t = load(&inner, &run.thread_id).await?;
    let state = match inner.graph(&run.graph_id) {
        Some(g) => {
            g.graph
                .state(&RunConfig::thread(t.thread_id.clone()))
                .await?
        }
        None => None,
    };
    let body = match (&state, &t.error) {
        (Some(s), _) if !s.interrupts.is_empty() => json!({
            "__interrupt__": s.interrupts.iter().map(wire::interrupt_ref).collect::<Vec<_>>()
        }),
        (_, Some(error)) if run.status == RunStatus::Error => json!({ "__error__": error }),
        (Some(s), _) => s.values.clone(),
        (None, _) => Value::Null,
    };
    Ok(json_with(StatusCode::OK, headers, &body))
}

/// `GET /threads/{id}/runs/{run_id}/stream`: the run's events from the start while
/// it runs; after a `Last-Event-ID` header, the events after that one (resumable
/// runs, also after they ended); an empty stream for a run that ended.
pub(crate) async fn join_stream(
    State(inner): App,
    Path((thread_id, run_id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let run = load_run(&inner, &thread_id, &run_id).await?;
    let q = query_pairs(raw.as_deref());
    let out_headers = locations(&run.thread_id, &run.run_id, "/stream");
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(live) = inner.lives.get(&run.run_id) else {
        return Ok(sse_response(out_headers, Body::empty()));
    };
    let from = match (&last, live.resumable) {
        (Some(id), true) => live.after_event_id(id),
        (Some(_), false) | (None, _) if live.is_finished() => {
            return Ok(sse_response(out_headers, Body::empty()));
        }
        _ => 0,
    };
    let cancel_on_drop = flag(query_get(&q, "cancel_on_disconnect"));
    Ok(sse_response(
        out_headers,
        Body::from_stream(live.sse(from, cancel_on_drop)),
    ))
}

/// `POST /threads/{id}/runs/{run_id}/cancel?action=interrupt|rollback&wait=`: 202
/// (200 `{}` with `wait`); 404 if the run is not pending or running.
pub(crate) async fn cancel(
    State(inner): App,
    Path((thread_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_pairs(raw.as_deref());
    let action = match query_get(&q, "action") {
        None | Some("interrupt") => CancelAction::Interrupt,
        Some("rollback") => CancelAction::Rollback,
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "action must be `interrupt` or `rollback`, got `{other}`"
            )));
        }
    };
    let wait = flag(query_get(&q, "wait"));
    let run = load_run(&inner, &thread_id, &run_id).await?;
    if !run.status.is_active() {
        return Err(ApiError::NotFound(
            "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and the runs haven't been deleted or completed."
                .into(),
        ));
    }
    crate::runs::cancel(&inner, &run, action, wait).await?;
    if wait {
        Ok(json_with(
            StatusCode::OK,
            locations(&run.thread_id, &run.run_id, "/join"),
            &json!({}),
        ))
    } else {
        Ok(StatusCode::ACCEPTED.into_response())
    }
}
