//! Errors, one enum per domain, and how request errors become HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hitl_runtime::{BoxError, CheckpointError, ResumeError, RunError};

use crate::auth::AuthError;
use crate::graph::CallError;

/// The store of threads and runs failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A thread with this id exists.
    #[error(
        "Thread with ID {thread} already exists; pass `if_exists: \"do_nothing\"` to get the existing thread instead"
    )]
    ThreadExists {
        /// The thread.
        thread: String,
    },
    /// A stored record does not decode. Never replaced by a default.
    #[error("corrupt record in the server's store ({what}): {message}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// The database schema is newer than this library.
    #[error(
        "the server's database is at schema version {found}, newer than this library's {supported}; upgrade hitl-server"
    )]
    SchemaTooNew {
        /// The stored version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The backend failed.
    #[error("the server's store failed: {0}")]
    Backend(#[source] BoxError),
}

/// A server that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No graph was registered.
    #[error(
        "the server has no graph: register one with `Server::builder().graph(\"agent\", graph)`"
    )]
    NoGraphs,
    /// Two graphs with one id.
    #[error("two graphs are registered as `{graph_id}`; graph ids must be unique")]
    DuplicateGraph {
        /// The id.
        graph_id: String,
    },
    /// A graph id the API cannot carry.
    #[error(
        "`{graph_id}` is not a valid graph id: use letters, digits, `-`, `_` or `.`, and not a UUID"
    )]
    InvalidGraphId {
        /// The id.
        graph_id: String,
    },
    /// A graph without a checkpointer: threads would not survive a run.
    #[error(
        "graph `{graph_id}` has no checkpointer; the server keeps threads in it: compile it with `.checkpointer(SqliteSaver::open(..).await?)`"
    )]
    NoCheckpointer {
        /// The graph.
        graph_id: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The server stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Binding or accepting failed.
    #[error("the server could not listen: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the store at startup failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request that cannot be served: an HTTP status and a `{"detail": ..}` body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn thread_not_found(thread_id: &str) -> Self {
        ApiError::NotFound(format!("Thread with ID {thread_id} not found"))
    }

    pub(crate) fn busy() -> Self {
        ApiError::Conflict(
            "Thread is already running a task. Wait for it to finish or choose a different multitask strategy."
                .into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            axum::Json(serde_json::json!({ "detail": self.to_string() })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ThreadExists { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(_) => ApiError::Unauthorized(e.to_string()),
            AuthError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
        }
    }
}

/// The status of a resume the runtime refused: a malformed answer is 422; a thread
/// that moved on (nothing pending, answered by someone else, a stale checkpoint) is
/// 409.
pub(crate) fn resume_status(e: &ResumeError) -> StatusCode {
    match e {
        ResumeError::NothingPending { .. }
        | ResumeError::UnknownThread { .. }
        | ResumeError::AlreadyAnswered { .. }
        | ResumeError::NotAtHead { .. }
        | ResumeError::Expired { .. }
        | ResumeError::PolicyChanged { .. } => StatusCode::CONFLICT,
        ResumeError::Unauthorized { .. } => StatusCode::FORBIDDEN,
        ResumeError::NoCheckpointer => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::InvalidUpdate { .. } | CallError::UnknownNode { .. } => {
                ApiError::Unprocessable(e.to_string())
            }
            CallError::Encode(_) => ApiError::Internal(e.to_string()),
            CallError::Run(run) => run.into(),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match &e {
            RunError::Resume(r) => match resume_status(r) {
                StatusCode::CONFLICT => ApiError::Conflict(e.to_string()),
                StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(e.to_string()),
                StatusCode::FORBIDDEN => ApiError::Forbidden(e.to_string()),
                _ => ApiError::Internal(e.to_string()),
            },
            RunError::Checkpoint(
                CheckpointError::Conflict { .. } | CheckpointError::WriteConflict { .. },
            )
            | RunError::ThreadBusy { .. } => ApiError::Conflict(e.to_string()),
            RunError::Checkpoint(CheckpointError::NotFound { .. }) => {
                ApiError::NotFound(e.to_string())
            }
            RunError::UnknownThread { .. } => {
                ApiError::Conflict(format!("{e} (the thread exists but has never run)"))
            }
            RunError::Graph(_)
            | RunError::EmptyCommand
            | RunError::InvalidUpdate { .. }
            | RunError::TooDeep { .. } => ApiError::Unprocessable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// The `{"error": <kind>, "message": <text>}` of a failed run.
pub(crate) fn run_error_json(e: &CallError) -> serde_json::Value {
    let kind = match e {
        CallError::Run(r) => match r {
            RunError::NodeFailed { .. } => "NodeError",
            RunError::RecursionLimit { .. } => "GraphRecursionError",
            RunError::Cancelled => "UserInterrupt",
            RunError::Resume(_) => "ResumeError",
            RunError::Checkpoint(_) => "CheckpointError",
            RunError::Reducer(_) => "ReducerError",
            RunError::InvalidRoute { .. } => "InvalidRoute",
            _ => "RunError",
        },
        CallError::InvalidUpdate { .. } | CallError::UnknownNode { .. } => "InvalidInput",
        CallError::Encode(_) => "EncodeError",
    };
    serde_json::json!({ "error": kind, "message": e.to_string() })
}
