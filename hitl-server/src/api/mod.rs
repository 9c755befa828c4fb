//! The HTTP routes, request parsing and authentication.

mod assistants;
mod decisions;
mod runs;
mod threads;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::server::Inner;

pub(crate) type App = State<Arc<Inner>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let protected = Router::new()
        .route("/assistants/search", post(assistants::search))
        .route("/assistants/{assistant_id}", get(assistants::get))
        .route(
            "/assistants/{assistant_id}/schemas",
            get(assistants::schemas),
        )
        .route("/threads", post(threads::create))
        .route("/threads/search", post(threads::search))
        .route(
            "/threads/{thread_id}",
            get(threads::get)
                .patch(threads::patch)
                .delete(threads::delete),
        )
        .route(
            "/threads/{thread_id}/state",
            get(threads::state).post(threads::update_state),
        )
        .route(
            "/threads/{thread_id}/state/checkpoint",
            post(threads::state_at_posted),
        )
        .route(
            "/threads/{thread_id}/state/{checkpoint_id}",
            get(threads::state_at),
        )
        .route("/threads/{thread_id}/decisions", get(decisions::list))
        .route("/inbox/api/pending", get(crate::inbox::pending))
        .route(
            "/threads/{thread_id}/history",
            post(threads::history).get(threads::history_get),
        )
        .route(
            "/threads/{thread_id}/runs",
            get(runs::list).post(runs::create),
        )
        .route("/threads/{thread_id}/runs/stream", post(runs::stream))
        .route("/threads/{thread_id}/runs/wait", post(runs::wait))
        .route("/threads/{thread_id}/runs/{run_id}", get(runs::get))
        .route("/threads/{thread_id}/runs/{run_id}/join", get(runs::join))
        .route(
            "/threads/{thread_id}/runs/{run_id}/stream",
            get(runs::join_stream),
        )
        .route(
            "/threads/{thread_id}/runs/{run_id}/cancel",
            post(runs::cancel),
        )
        .route_layer(middleware::from_fn_with_state(inner.clone(), authenticate));
    Router::new()
        .route("/ok", get(ok))
        .route("/info", get(info))
        .route("/inbox", get(crate::inbox::index))
        .route("/inbox/", get(crate::inbox::index))
        .route("/inbox/app.js", get(crate::inbox::app))
        .route("/inbox/style.css", get(crate::inbox::style))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(vary_origin))
        .with_state(inner)
}

async fn vary_origin(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    res
}

async fn authenticate(State(inner): App, mut req: Request, next: Next) -> Response {
    let identity = match &inner.auth {
        None => Identity::anonymous(),
        Some(auth) => match auth.authenticate(req.headers()).await {
            Ok(identity) => identity,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    req.extensions_mut().insert(identity);
    next.run(req).await
}

async fn ok() -> Response {
    axum::Json(json!({"ok": true, "services": {}})).into_response()
}

async fn info() -> Response {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "server": "hitl-server",
        "flags": {"assistants": true, "crons": false, "langsmith": false},
        "host": {"kind": "self-hosted", "project_id": null, "host_revision_id": null, "revision_id": null, "tenant_id": null},
    }))
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

/// A JSON body with `{"detail": ..}` errors (422); an empty body reads as `{}`.
pub(crate) struct Body422<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body422<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::Unprocessable(format!("cannot read the body: {e}")))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ApiError::Unprocessable(if path == "." {
                format!("invalid request body: {inner}")
            } else {
                format!("invalid request body at `{path}`: {inner}")
            })
        })?;
        Ok(Body422(value))
    }
}

/// Query parameters, percent-decoded.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean query flag: `1`, `true`, `yes` (any case).
pub(crate) fn flag(v: Option<&str>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// A UUID path segment, in canonical form; 422 otherwise.
pub(crate) fn uuid_param(what: &str, s: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::Unprocessable(format!("Invalid {what} ID: must be a UUID")))
}

/// A JSON response with extra headers.
pub(crate) fn json_with(
    status: StatusCode,
    headers: HeaderMap,
    body: &impl serde::Serialize,
) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().extend(headers);
    res
}

pub(crate) fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    h
}

/// An SSE response.
pub(crate) fn sse_response(headers: HeaderMap, body: Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.extend(headers);
    res
}

/// Pagination headers of a list endpoint.
pub(crate) fn pagination(total: usize, offset: usize, returned: usize) -> HeaderMap {
    let mut pairs = vec![("x-pagination-total", total.to_string())];
    if offset + returned < total {
        pairs.push(("x-pagination-next", (offset + returned).to_string()));
    }
    header_map(&pairs)
}

pub(crate) fn value_usize(
    v: Option<&Value>,
    what: &str,
    default: usize,
) -> Result<usize, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::Unprocessable(format!("{what} must be a non-negative integer, got {v}"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = query_pairs(Some(
            "wait=0&action=interrupt&stream_mode=&x=a%20b+c&bad=%zz",
        ));
        assert_eq!(query_get(&q, "wait"), Some("0"));
        assert_eq!(query_get(&q, "action"), Some("interrupt"));
        assert_eq!(query_get(&q, "stream_mode"), Some(""));
        assert_eq!(query_get(&q, "x"), Some("a b c"));
        assert_eq!(query_get(&q, "bad"), Some("%zz"));
        assert!(flag(Some("True")) && !flag(Some("0")) && !flag(None));
    }
}
