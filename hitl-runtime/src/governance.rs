//! Who may answer an interrupt, until when, and how many must agree.
//!
//! An interrupt can carry [`Governance`]: a deadline with the answer applied when it
//! passes, the roles a reviewer needs, and how many distinct reviewers must approve.
//! `#[tool(interrupt(expires = "4h", on_timeout = reject(".."), reviewers = ["finance"],
//! approvals = 2))]` declares it for tool reviews; [`crate::InterruptRequest::governance`]
//! for any interrupt. A resume says who decides with [`crate::Command::by`]; every
//! answer is recorded ([`crate::checkpoint::DecisionRecord`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who answers an interrupt: an identity and its roles, as the caller's authentication
/// established them. hitl does not authenticate; it checks the roles a policy asks
/// for and records the identity with the decision.
///
/// ```
/// # use hitl_runtime::Reviewer;
/// let alice = Reviewer::new("alice@example.com").role("finance");
/// assert!(alice.has_role("finance"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reviewer {
    /// The identity (a user id, an email address).
    pub id: String,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Reviewer {
    /// An identity with no roles.
    pub fn new(id: impl Into<String>) -> Self {
        Reviewer {
            id: id.into(),
            roles: Vec::new(),
        }
    }

    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Whether it has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The identity of callers nobody authenticated (hitl-server without an
    /// authenticator): `anonymous`, no roles.
    pub fn anonymous() -> Self {
        Reviewer::new("anonymous")
    }
}

/// Who decided: a reviewer, or the system applying a timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DecidedBy {
    /// A person (or a program acting for one).
    Reviewer(Reviewer),
    /// Nobody answered in time; the declared timeout answer was applied.
    Timeout,
}

/// The rules an interrupt is answered under, stored with it when it is raised.
///
/// Serialized with the pending interrupt (`"governance": {..}`), times in milliseconds
/// since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Governance {
    /// When it was raised (set by the runtime).
    #[serde(default)]
    pub raised_at: u64,
    /// When it expires, if it does (set by the runtime from [`GovernanceSpec::expires`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The answer applied when it expires (`None` with a deadline: a late answer is
    /// refused and nothing is applied by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<Value>,
    /// The roles a reviewer needs: one role of every group (a tool review asks one group
    /// per reviewed tool that names roles). Empty: anyone may answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<Vec<String>>,
    /// How many distinct reviewers must approve (1: the first answer decides).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub approvals: u32,
    /// A digest of the policy and argument schema of what is reviewed, as they were
    /// when it was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// The tools reviewed, if it is a tool review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// What an interrupt declares, before the runtime stamps it with times.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GovernanceSpec {
    /// How long it may wait.
    pub expires: Option<Duration>,
    /// When it was raised (ms since the Unix epoch); `None`: when the runtime stores it.
    pub raised_at: Option<u64>,
    /// The answer applied when it expires.
    pub on_timeout: Option<Value>,
    /// Role groups: a reviewer needs one role of each.
    pub reviewers: Vec<Vec<String>>,
    /// Distinct approvals needed (at least 1).
    pub approvals: u32,
    /// Digest of the policy of what is reviewed.
    pub policy_digest: Option<String>,
    /// The tools reviewed.
    pub tools: Vec<String>,
}

impl GovernanceSpec {
    /// Whether it declares nothing (the interrupt is then stored without governance).
    pub fn is_empty(&self) -> bool {
        self.expires.is_none()
            && self.on_timeout.is_none()
            && self.reviewers.is_empty()
            && self.approvals <= 1
            && self.policy_digest.is_none()
    }

    /// The governance of an interrupt raised at `now_ms`.
    pub(crate) fn stamp(self, now_ms: u64) -> Governance {
        let now_ms = self.raised_at.unwrap_or(now_ms);
        Governance {
            raised_at: now_ms,
            expires_at: self
                .expires
                .map(|d| now_ms.saturating_add(d.as_millis() as u64)),
            on_timeout: self.on_timeout,
            reviewers: self.reviewers,
            approvals: self.approvals.max(1),
            policy_digest: self.policy_digest,
            tools: self.tools,
        }
    }
}

impl Governance {
    /// Whether it sets any rule for answering: a deadline, roles, or more than one
    /// approval (a tool review always carries its policy digest; that is not a rule).
    pub fn has_rules(&self) -> bool {
        self.expires_at.is_some() || !self.reviewers.is_empty() || self.approvals > 1
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| now_ms >= at)
    }

    /// Whether `reviewer` holds the roles it asks for.
    pub fn authorizes(&self, reviewer: Option<&Reviewer>) -> bool {
        self.reviewers
            .iter()
            .all(|group| reviewer.is_some_and(|r| group.iter().any(|role| r.has_role(role))))
    }

    /// The roles it asks for, for messages: `finance; ops or admin`.
    pub fn roles_text(&self) -> String {
        self.reviewers
            .iter()
            .map(|g| g.join(" or "))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Milliseconds since the Unix epoch of a `SystemTime` (0 before it).
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_groups_need_one_role_each() {
        let g = Governance {
            reviewers: vec![vec!["finance".into()], vec!["ops".into(), "admin".into()]],
            ..Governance::default()
        };
        let both = Reviewer::new("a").role("finance").role("admin");
        let one = Reviewer::new("b").role("finance");
        assert!(g.authorizes(Some(&both)));
        assert!(!g.authorizes(Some(&one)));
        assert!(!g.authorizes(None));
        assert!(Governance::default().authorizes(None));
        assert_eq!(g.roles_text(), "finance; ops or admin");
    }
}
