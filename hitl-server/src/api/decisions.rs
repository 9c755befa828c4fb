//! `GET /threads/{id}/decisions`: a thread's decision records and whether their chain
//! verifies (hitl's addition to the API).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use hitl_runtime::checkpoint::{RecordQuery, verify_chain};
use serde_json::{Value, json};

use super::App;
use super::threads::{graph_of, load};
use crate::error::ApiError;

/// `{"thread_id", "records": [{"seq", "hash", "prev_hash", "record"}], "chain":
/// {"verified": true, "records", "head"} | {"verified": false, "seq", "error"}}`.
pub(crate) async fn list(
    State(inner): App,
    Path(thread_id): Path<String>,
) -> Result<Response, ApiError> {
    let t = load(&inner, &thread_id).await?;
    let Some(saver) = graph_of(&inner, &t).and_then(|g| g.graph.checkpointer()) else {
        return Ok(axum::Json(json!({
            "thread_id": t.thread_id,
            "records": [],
            "chain": {"verified": true, "records": 0, "head": null},
        }))
        .into_response());
    };
    let entries = saver
        .decision_records(&RecordQuery::thread(t.thread_id.clone()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let chain = match verify_chain(&t.thread_id, &entries) {
        Ok(report) => json!({"verified": true, "records": report.records, "head": report.head}),
        Err(e) => json!({"verified": false, "seq": e.seq, "error": e.to_string()}),
    };
    let records: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "hash": e.hash,
                "prev_hash": e.prev_hash,
                // A body that does not decode is shown as stored; the chain says why.
                "record": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::String(e.body.clone())),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "thread_id": t.thread_id,
        "records": records,
        "chain": chain,
    }))
    .into_response())
}
