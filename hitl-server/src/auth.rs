//! Who is calling: a pluggable [`Authenticator`], and [`BearerTokens`], a ready one.
//!
//! Every request except `GET /ok` and `GET /info` goes through the authenticator
//! configured with [`ServerBuilder::auth`](crate::ServerBuilder::auth); it returns an
//! [`Identity`] (recorded on every run) or refuses with 401 or 403. Without one the
//! server is open and runs are recorded as [`Identity::anonymous`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use axum::http::HeaderMap;
use serde::Deserialize;

/// Who made a request: an id and roles, the runtime's [`Reviewer`](hitl_runtime::Reviewer).
/// A resume sent with this identity is decided as it: its roles are checked against
/// governed reviews and it is written in the decision records.
pub type Identity = hitl_runtime::Reviewer;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials, or unknown ones: HTTP 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known caller, not allowed: HTTP 403.
    #[error("{0}")]
    Forbidden(String),
}

/// Turns request headers into an [`Identity`], or refuses the request.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Authenticates one request.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError>;
}

/// A problem with a token file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid token list.
    #[error(
        "the token file {path} is not valid: {source}; expected {{\"tokens\": [{{\"token\": \"...\", \"id\": \"alice\", \"roles\": [\"reviewer\"]}}], \"require_roles\": [\"reviewer\"]}}"
    )]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A token listed twice.
    #[error("the token of `{id}` is listed twice; tokens must be unique")]
    DuplicateToken {
        /// The identity of the second entry.
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    require_roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    id: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Static bearer tokens, each mapped to an identity.
///
/// A token is read from `Authorization: Bearer <token>` or from `x-api-key: <token>`
/// (what the LangGraph SDKs send when given an API key). A missing or unknown token is
/// 401; with [`require_any_role`](Self::require_any_role), an identity with none of
/// those roles is 403.
///
/// ```
/// use hitl_server::{BearerTokens, Identity};
/// let auth = BearerTokens::new()
///     .token("s3cret", Identity::new("alice").role("reviewer"))
///     .require_any_role(["reviewer"]);
/// ```
#[derive(Clone, Default)]
pub struct BearerTokens {
    tokens: HashMap<String, Identity>,
    require: Vec<String>,
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens.
        f.debug_struct("BearerTokens")
            .field("identities", &self.tokens.len())
            .field("require", &self.require)
            .finish()
    }
}

impl BearerTokens {
    /// No tokens yet: every request is refused until one is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `identity`.
    pub fn token(mut self, token: impl Into<String>, identity: Identity) -> Self {
        self.tokens.insert(token.into(), identity);
        self
    }

    /// Refuses (403) identities that have none of these roles.
    pub fn require_any_role<R: Into<String>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        self.require = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Reads a JSON file:
    /// `{"tokens": [{"token": "...", "id": "alice", "roles": ["reviewer"]}], "require_roles": ["reviewer"]}`
    /// (`roles` and `require_roles` optional).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, AuthConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let file: TokenFile =
            serde_json::from_str(&text).map_err(|source| AuthConfigError::Parse {
                path: shown,
                source,
            })?;
        let mut auth = BearerTokens::new().require_any_role(file.require_roles);
        for entry in file.tokens {
            if auth.tokens.contains_key(&entry.token) {
                return Err(AuthConfigError::DuplicateToken { id: entry.id });
            }
            auth.tokens.insert(
                entry.token,
                Identity {
                    id: entry.id,
                    roles: entry.roles,
                },
            );
        }
        Ok(auth)
    }
}

fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

#[async_trait::async_trait]
impl Authenticator for BearerTokens {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = presented_token(headers).ok_or_else(|| {
            AuthError::Unauthenticated(
                "this server requires a token: send `Authorization: Bearer <token>` or `x-api-key: <token>`"
                    .into(),
            )
        })?;
        let identity = self.tokens.get(token).ok_or_else(|| {
            AuthError::Unauthenticated("the token is not valid for this server".into())
        })?;
        if !self.require.is_empty() && !self.require.iter().any(|r| identity.has_role(r)) {
            return Err(AuthError::Forbidden(format!(
                "`{}` has none of the roles this server requires ({})",
                identity.id,
                self.require.join(", ")
            )));
        }
        Ok(identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[tokio::test]
    async fn bearer_and_api_key_headers_are_accepted() {
        let auth = BearerTokens::new()
            .token("t1", Identity::new("alice").role("reviewer"))
            .token("t2", Identity::new("bob"))
            .require_any_role(["reviewer"]);
        let alice = auth
            .authenticate(&headers("authorization", "Bearer t1"))
            .await
            .unwrap();
        assert_eq!(alice, Identity::new("alice").role("reviewer"));
        assert_eq!(
            auth.authenticate(&headers("x-api-key", "t1"))
                .await
                .unwrap()
                .id,
            "alice"
        );
        assert!(matches!(
            auth.authenticate(&headers("x-api-key", "t2")).await,
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            auth.authenticate(&headers("authorization", "Bearer nope"))
                .await,
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.authenticate(&HeaderMap::new()).await,
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn token_files_are_strict() {
        let dir = std::env::temp_dir().join(format!("hitl-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"tokens": [{"token": "a", "id": "alice", "roles": ["reviewer"]}], "require_roles": ["reviewer"]}"#,
        )
        .unwrap();
        assert_eq!(BearerTokens::from_file(&good).unwrap().tokens.len(), 1);
        let typo = dir.join("typo.json");
        std::fs::write(
            &typo,
            r#"{"tokens": [{"token": "a", "id": "x", "role": []}]}"#,
        )
        .unwrap();
        let e = BearerTokens::from_file(&typo).unwrap_err();
        assert!(e.to_string().contains("unknown field `role`"), "{e}");
        let dup = dir.join("dup.json");
        std::fs::write(
            &dup,
            r#"{"tokens": [{"token": "a", "id": "x"}, {"token": "a", "id": "y"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            BearerTokens::from_file(&dup),
            Err(AuthConfigError::DuplicateToken { .. })
        ));
    }
}
