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
///
/// ```
/// # use hitl_runtime::agent::Backoff;
/// # use std::time::Duration;
/// let b = Backoff::new(Duration::from_millis(100), 3.0, Duration::from_secs(1))?;
/// assert_eq!(b.delay(1), Duration::from_millis(300));
/// assert!(Backoff::new(Duration::from_millis(100), -2.0, Duration::from_secs(1)).is_err());
/// # Ok::<(), hitl_runtime::agent::InvalidBackoff>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
}

/// Why a [`Backoff`] cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBackoff {
    /// The factor is below 1, or not a finite number.
    #[error(
        "the backoff factor must be a finite number of at least 1 (2.0 doubles each delay), not {0}"
    )]
    Factor(f64),
    /// The longest delay is shorter than the first.
    #[error("the longest backoff delay ({max:?}) is shorter than the first ({initial:?})")]
    MaxBelowInitial {
        /// The first delay.
        initial: Duration,
        /// The longest delay.
        max: Duration,
    },
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
    /// A backoff starting at `initial`, growing by `factor` (a finite number, at least
    /// 1) each attempt, capped at `max` (at least `initial`).
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Result<Self, InvalidBackoff> {
        if !factor.is_finite() || factor < 1.0 {
            return Err(InvalidBackoff::Factor(factor));
        }
        if max < initial {
            return Err(InvalidBackoff::MaxBelowInitial { initial, max });
        }
        Ok(Backoff {
            initial,
            factor,
            max,
        })
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The growth per attempt.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (0-based); never more than `max`, for
    /// any attempt.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let scaled = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::try_from_secs_f64(scaled).map_or(self.max, |d| d.min(self.max))
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
        let b = Backoff::new(Duration::from_millis(100), 3.0, Duration::from_secs(1)).unwrap();
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(300));
        assert_eq!(b.delay(2), Duration::from_millis(900));
        assert_eq!(b.delay(3), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1), "no overflow");
        let huge = Backoff::new(Duration::from_secs(1), 1e308, Duration::MAX).unwrap();
        assert_eq!(huge.delay(5), Duration::MAX);
    }

    #[test]
    fn a_backoff_that_would_shrink_overflow_or_panic_is_refused() {
        let ms = Duration::from_millis;
        for factor in [-2.0, 0.5, f64::NAN, f64::INFINITY] {
            let err = Backoff::new(ms(10), factor, ms(100)).unwrap_err();
            assert!(matches!(err, InvalidBackoff::Factor(_)), "{factor}");
        }
        assert_eq!(
            Backoff::new(ms(100), 2.0, ms(10)).unwrap_err().to_string(),
            "the longest backoff delay (10ms) is shorter than the first (100ms)"
        );
    }
}
