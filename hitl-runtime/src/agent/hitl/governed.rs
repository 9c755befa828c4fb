//! The governance of a review: deadline, timeout decisions, role groups, approvals and
//! the digests it is bound to.

use super::{HumanInTheLoop, ReviewConfig};
use crate::governance::GovernanceSpec;
use crate::message::ToolCall;
use crate::policy::{Decision, InterruptPolicy};

impl HumanInTheLoop {
    /// The governance of a review of these calls raised at `now`: the earliest
    /// deadline, a timeout decision per call (declared, else a rejection), one role
    /// group per tool that names roles, the most approvals any of them needs.
    pub(super) fn governance(
        &self,
        reviewed: &[(&ToolCall, &InterruptPolicy)],
        configs: &[&ReviewConfig],
        now: u64,
    ) -> (GovernanceSpec, Option<Vec<Decision>>) {
        let expires = reviewed.iter().filter_map(|(_, p)| p.expiry()).min();
        let timeouts = expires.map(|_| {
            reviewed
                .iter()
                .map(|(_, p)| {
                    p.timeout_decision().unwrap_or_else(|| Decision::Reject {
                        message: Some(crate::policy::EXPIRED_MESSAGE.to_owned()),
                    })
                })
                .collect::<Vec<_>>()
        });
        let mut groups: Vec<Vec<String>> = Vec::new();
        for (_, p) in reviewed {
            let roles = p.reviewer_roles().to_vec();
            if !roles.is_empty() && !groups.contains(&roles) {
                groups.push(roles);
            }
        }
        let digests: Vec<&str> = configs
            .iter()
            .filter_map(|c| c.rules.policy_digest.as_deref())
            .collect();
        let spec = GovernanceSpec {
            expires,
            raised_at: Some(now),
            on_timeout: None,
            reviewers: groups,
            approvals: reviewed
                .iter()
                .map(|(_, p)| p.required_approvals())
                .max()
                .unwrap_or(1),
            // One tool: its digest; several: the digest of theirs, in order.
            policy_digest: match digests.as_slice() {
                [] => None,
                [one] => Some((*one).to_owned()),
                many => Some(crate::checkpoint::sha256_hex(many.join("\n").as_bytes())),
            },
            tools: reviewed.iter().map(|(c, _)| c.name.clone()).collect(),
        };
        (spec, timeouts)
    }
}
