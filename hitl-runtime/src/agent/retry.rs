//! Retrying failed model and tool calls.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::middleware::{Middleware, ModelNext, ToolCallRequest, ToolNext};
use super::model::{ModelError, ModelRequest};
use crate::message::AssistantMessage;
use crate::tool::ToolError;

/// Exponential backoff: `initial`, then times `factor` each attempt, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The growth per attempt.
    pub factor: f64,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let scaled = self.initial.as_secs_f64() * self.factor.powi(attempt as i32);
        Duration::from_secs_f64(scaled.min(self.max.as_secs_f64()))
    }
}

type ModelPredicate = Arc<dyn Fn(&ModelError) -> bool + Send + Sync>;
type ToolPredicate = Arc<dyn Fn(&ToolError) -> bool + Send + Sync>;

/// Retries failed model calls: by default the retryable ones (timeouts, connection
/// errors, 408, 409, 429, 5xx), with exponential backoff.
#[derive(Clone)]
pub struct ModelRetry {
    max_retries: u32,
    backoff: Backoff,
    retry_if: ModelPredicate,
}

impl fmt::Debug for ModelRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRetry")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl ModelRetry {
    /// Up to `max_retries` retries after the first attempt.
    pub fn new(max_retries: u32) -> Self {
        ModelRetry {
            max_retries,
            backoff: Backoff::default(),
            retry_if: Arc::new(ModelError::is_retryable),
        }
    }

    /// The delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Which errors are retried.
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&ModelError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Arc::new(predicate);
        self
    }
}

#[async_trait::async_trait]
impl Middleware for ModelRetry {
    fn name(&self) -> &str {
        "ModelRetry"
    }

    async fn wrap_model_call(
        &self,
        request: ModelRequest<'_>,
        next: ModelNext<'_>,
    ) -> Result<AssistantMessage, ModelError> {
        let mut attempt = 0;
        loop {
            match next.run(request.clone()).await {
                Err(e) if attempt < self.max_retries && (self.retry_if)(&e) => {
                    tracing::warn!(attempt, error = %e, "model call failed; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// Retries failed tool calls: by default tool failures ([`ToolError::Failed`]), not
/// invalid arguments, rejections or interrupts.
#[derive(Clone)]
pub struct ToolRetry {
    max_retries: u32,
    backoff: Backoff,
    retry_if: ToolPredicate,
    tools: Option<HashSet<String>>,
}

impl fmt::Debug for ToolRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolRetry")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

impl ToolRetry {
    /// Up to `max_retries` retries after the first attempt.
    pub fn new(max_retries: u32) -> Self {
        ToolRetry {
            max_retries,
            backoff: Backoff::default(),
            retry_if: Arc::new(|e| matches!(e, ToolError::Failed(_))),
            tools: None,
        }
    }

    /// The delays between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Which errors are retried.
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&ToolError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Arc::new(predicate);
        self
    }

    /// Retries only these tools.
    pub fn only<I: IntoIterator<Item = T>, T: Into<String>>(mut self, tools: I) -> Self {
        self.tools = Some(tools.into_iter().map(Into::into).collect());
        self
    }
}

#[async_trait::async_trait]
impl Middleware for ToolRetry {
    fn name(&self) -> &str {
        "ToolRetry"
    }

    async fn wrap_tool_call(
        &self,
        request: ToolCallRequest<'_>,
        next: ToolNext<'_>,
    ) -> Result<Value, ToolError> {
        if self
            .tools
            .as_ref()
            .is_some_and(|t| !t.contains(&request.call.name))
        {
            return next.run(request).await;
        }
        let mut attempt = 0;
        loop {
            match next.run(request.clone()).await {
                Err(e) if attempt < self.max_retries && (self.retry_if)(&e) => {
                    tracing::warn!(attempt, tool = %request.call.name, error = %e, "tool call failed; retrying");
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            factor: 3.0,
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(300));
        assert_eq!(b.delay(2), Duration::from_millis(900));
        assert_eq!(b.delay(3), Duration::from_secs(1));
    }
}
