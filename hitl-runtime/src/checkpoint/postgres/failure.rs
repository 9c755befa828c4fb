//! Postgres failures as checkpoint errors, with the server's message in the text.

use std::fmt;

use crate::error::{BoxError, CheckpointError};

pub(super) fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> CheckpointError {
    let db = (&e as &dyn std::any::Any)
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error);
    let message = match db {
        Some(db) => {
            let mut m = format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                m.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                m.push_str(&format!("; hint: {hint}"));
            }
            m
        }
        // A column of an unexpected type, a lost connection...: the error's text and
        // its causes.
        None => {
            let mut m = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                m.push_str(&format!(": {c}"));
                cause = c.source();
            }
            m
        }
    };
    CheckpointError::Backend(Box::new(PgFailure {
        message,
        source: Box::new(e),
    }))
}

/// A Postgres failure, with the server's message in its text (tokio-postgres says only
/// "db error" and keeps the rest in its source).
#[derive(Debug)]
struct PgFailure {
    message: String,
    source: BoxError,
}

impl fmt::Display for PgFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
