//! Starting a run from a `Command`: strict validation of resume answers against the
//! pending interrupts, then storing the answers and the command's update and gotos as
//! pending writes on the head. Nothing is stored unless everything is valid.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use super::commit::{assemble, encode_given};
use super::step::{Current, Runner};
use crate::checkpoint::pending::{
    self, ApprovalPayload, Collected, CommandPayload, ResumePayload, approval_idx,
};
use crate::checkpoint::{DecisionRecord, Outcome, WriteKind, sha256_hex};
use crate::error::{ResumeError, RunError};
use crate::governance::DecidedBy;
use crate::graph::{Command, Resume};
use crate::ids::{CheckpointId, InterruptId, TaskId};
use crate::interrupt::{Refusal, ResumeKind, ResumeValidator, Vote};
use crate::state::State;

/// An answer accepted for storage.
pub(super) struct Accepted {
    /// The task holding the interrupt.
    owner: TaskId,
    id: InterruptId,
    value: Value,
    /// What it does and who gave it, as recorded.
    record: DecisionRecord,
}

/// Who answers, when, and where: what a resume is checked and recorded with.
pub(super) struct Answering<'a> {
    pub(super) kinds: &'a HashMap<String, ResumeValidator>,
    pub(super) thread: &'a str,
    pub(super) checkpoint: CheckpointId,
    pub(super) run_id: Option<&'a str>,
    pub(super) decided_by: Option<&'a DecidedBy>,
    pub(super) now: u64,
}

impl<S: State> Runner<S> {
    /// The checkpoint a `Command` starts from: a new thread's first checkpoint (update
    /// and goto only), or the head with the command's writes stored on it.
    pub(super) async fn start_command(
        &mut self,
        head: Option<Current<S>>,
        command: Command<S>,
    ) -> Result<Current<S>, RunError> {
        let (decided_by, at) = command.decided_by();
        let decided_by = decided_by.cloned();
        if let Some(DecidedBy::Reviewer(r)) = &decided_by {
            self.reviewer = Some(r.clone());
        }
        let now = at.unwrap_or_else(crate::ids::now_ms);
        let (update, goto, resume) = command.into_parts();
        if update.is_none() && goto.is_empty() && resume.is_none() {
            return Err(RunError::EmptyCommand);
        }
        let gotos = self.graph.topology.command_gotos(goto)?;
        let Some(mut head) = head else {
            if resume.is_some() {
                return Err(ResumeError::UnknownThread {
                    thread: self.thread.to_string(),
                }
                .into());
            }
            let next = (!gotos.is_empty()).then_some(gotos);
            return self
                .write_input(None, update.unwrap_or_default(), next)
                .await;
        };
        if let Some(target) = self.cfg.checkpoint_id
            && target != head.checkpoint.id
        {
            return Err(ResumeError::NotAtHead {
                requested: target,
                head: head.checkpoint.id,
            }
            .into());
        }
        let mut writes = Vec::new();
        let mut records = Vec::new();
        if let Some(resume) = resume {
            let answering = Answering {
                kinds: &self.graph.validators,
                thread: &self.thread,
                checkpoint: head.checkpoint.id,
                run_id: self.cfg.metadata.get("run_id").and_then(Value::as_str),
                decided_by: decided_by.as_ref(),
                now,
            };
            let accepted = validate_resume(&answering, &head.collected, resume)?;
            // A record is a large value: room for exactly these (not the default four).
            records.reserve_exact(accepted.len());
            let collected = &mut head.collected;
            for Accepted {
                owner,
                id,
                value,
                record,
            } in accepted
            {
                if let Outcome::Approval { .. } = record.outcome {
                    let reviewer = record.reviewer_id().unwrap_or_default().to_owned();
                    writes.push(pending::write(
                        owner,
                        approval_idx(id, &reviewer),
                        WriteKind::Approval,
                        &ApprovalPayload {
                            interrupt: id,
                            reviewer: reviewer.clone(),
                        },
                    ));
                    let who = collected.approvals.entry(id).or_default();
                    if !who.contains(&reviewer) {
                        who.push(reviewer);
                    }
                    records.push(record);
                    continue;
                }
                let n = collected.resume_counts.entry(owner).or_default();
                let idx = WriteKind::RESUME_BASE_IDX - *n as i32;
                *n += 1;
                writes.push(pending::write(
                    owner,
                    idx,
                    WriteKind::Resume,
                    &ResumePayload {
                        interrupt: id,
                        value: &value,
                    },
                ));
                Arc::make_mut(&mut collected.answers).insert(id, value);
                records.push(record);
            }
            let answers = &collected.answers;
            collected
                .pending
                .retain(|(_, id)| !answers.contains_key(id));
        }
        if update.is_some() || !gotos.is_empty() {
            let update = match update {
                Some(mut u) => Some(assemble::<S>(&encode_given::<S>("command", &mut u)?)),
                None => None,
            };
            let payload = CommandPayload {
                update,
                goto: gotos,
            };
            writes.push(pending::write(
                TaskId::NULL,
                head.collected.commands.len() as i32,
                WriteKind::Command,
                &payload,
            ));
            head.collected.commands.push(payload);
        }
        self.saver
            .put_decisions(&self.thread, &self.ns, head.checkpoint.id, writes, records)
            .await?;
        Ok(head)
    }
}

/// Checks a resume against the pending interrupts, strictly: a single value needs
/// exactly one pending interrupt; ids must be pending and answered once; each answer
/// must come in time, from a reviewer with the roles asked for, about a tool whose
/// policy did not change, and pass its interrupt kind's check and its stored schema.
pub(super) fn validate_resume(
    answering: &Answering<'_>,
    collected: &Collected,
    resume: Resume,
) -> Result<Vec<Accepted>, ResumeError> {
    let pending = &collected.pending;
    if pending.is_empty() {
        return Err(ResumeError::NothingPending {
            thread: answering.thread.to_owned(),
        });
    }
    let pending_ids = || pending.iter().map(|(_, id)| *id).collect::<Vec<_>>();
    let chosen: Vec<(TaskId, InterruptId, Result<Value, String>)> = match resume {
        Resume::Single(value) => {
            if pending.len() > 1 {
                return Err(ResumeError::Ambiguous {
                    pending: pending_ids(),
                });
            }
            vec![(pending[0].0, pending[0].1, value)]
        }
        Resume::ById(list) => {
            if list.is_empty() {
                return Err(ResumeError::EmptyMap {
                    pending: pending_ids(),
                });
            }
            let mut seen = HashSet::new();
            let mut chosen = Vec::with_capacity(list.len());
            for (id, value) in list {
                if !seen.insert(id) {
                    return Err(ResumeError::InvalidValue {
                        id,
                        problems: vec!["it is answered twice in one resume".into()],
                    });
                }
                match pending.iter().find(|(_, p)| *p == id) {
                    Some((owner, p)) => chosen.push((*owner, *p, value)),
                    None if collected.answers.contains_key(&id) => {
                        return Err(ResumeError::AlreadyAnswered { id });
                    }
                    None => {
                        return Err(ResumeError::UnknownInterrupt {
                            id,
                            pending: pending_ids(),
                        });
                    }
                }
            }
            chosen
        }
    };
    let mut accepted = Vec::with_capacity(chosen.len());
    for (owner, id, value) in chosen {
        let invalid = |problems| ResumeError::InvalidValue { id, problems };
        let value = value.map_err(|e| invalid(vec![e]))?;
        crate::schema::check_depth(&value).map_err(|e| invalid(vec![e]))?;
        let (value, record) = check_answer(answering, collected, id, value)?;
        accepted.push(Accepted {
            owner,
            id,
            value,
            record,
        });
    }
    Ok(accepted)
}

/// Checks one answer: its deadline and the reviewer's authority, that what it reviews
/// did not change, its kind's check and its stored schema; counts it toward a quorum.
/// Returns it as it is stored (in the kind's canonical form, see
/// [`crate::ResumeKind::normalize`]) with its decision record.
fn check_answer(
    answering: &Answering<'_>,
    collected: &Collected,
    id: InterruptId,
    mut value: Value,
) -> Result<(Value, DecisionRecord), ResumeError> {
    let invalid = |problems| ResumeError::InvalidValue { id, problems };
    let record = collected
        .record(id)
        .ok_or_else(|| invalid(vec!["its stored record is missing".into()]))?;
    let mut view = record
        .view()
        .map_err(|e| invalid(vec![format!("its stored record does not decode: {e}")]))?;
    let governed = view.governance.is_some();
    let governance = view.governance.take().unwrap_or_default();
    let reviewer = match answering.decided_by {
        Some(DecidedBy::Reviewer(r)) => Some(r),
        _ => None,
    };
    if answering.decided_by == Some(&DecidedBy::Timeout) {
        let due = governance.expired_at(answering.now);
        if !due || governance.on_timeout.as_ref() != Some(&value) {
            return Err(invalid(vec![
                "the system answers only an expired interrupt, with its declared timeout answer"
                    .into(),
            ]));
        }
    } else {
        if governance.expired_at(answering.now) {
            return Err(ResumeError::Expired {
                id,
                expired_at: governance.expires_at.unwrap_or_default(),
                has_timeout_answer: governance.on_timeout.is_some(),
            });
        }
        if !governance.authorizes(reviewer) {
            return Err(ResumeError::Unauthorized {
                id,
                needs: governance.roles_text(),
                reviewer: reviewer.map(|r| r.id.clone()),
            });
        }
        if governance.approvals > 1 && reviewer.is_none() {
            return Err(ResumeError::Unauthorized {
                id,
                needs: format!(
                    "any ({} distinct reviewers must approve)",
                    governance.approvals
                ),
                reviewer: None,
            });
        }
    }
    let mut vote = Vote::Decides;
    if let Some(kind) = &view.kind {
        let validator =
            answering
                .kinds
                .get(kind.as_ref())
                .ok_or_else(|| ResumeError::UnknownKind {
                    id,
                    kind: kind.to_string(),
                })?;
        let counts = governance.approvals > 1;
        let judged = match validator.__in_place() {
            Some(in_place) => crate::error::catching(
                || format!("the check of interrupt kind `{kind}`"),
                || in_place.judge(view.value, value, counts),
            )
            .map_err(|e| invalid(vec![e.to_string()]))?,
            None => judge(&**validator, kind, view.value, value, counts).map_err(invalid)?,
        };
        (value, vote) = judged.map_err(|refusal| match refusal {
            Refusal::Changed(c) => ResumeError::PolicyChanged {
                id,
                tool: c.tool,
                raised: c.raised,
                current: c.current,
            },
            Refusal::Invalid(problems) => invalid(problems),
        })?;
    }
    // A kind that derives the schema left it out; its check covers it.
    if let Some(schema) = view.resume_schema {
        crate::schema::validate_raw(schema, &value).map_err(invalid)?;
    }
    let mut outcome = Outcome::Decided;
    if governance.approvals > 1
        && let Some(reviewer) = reviewer
    {
        let before = collected.approvals.get(&id).map_or(&[][..], Vec::as_slice);
        let count = before.len() as u32 + u32::from(!before.contains(&reviewer.id));
        let required = governance.approvals;
        match vote {
            Vote::Approves if count < required => {
                outcome = Outcome::Approval { count, required };
            }
            Vote::Mixed if count < required => {
                return Err(invalid(vec![format!(
                    "it approves some calls and declines others while {count} of {required} \
                     approvals are given; approve everything to add an approval, or decline \
                     what needs approvals"
                )]));
            }
            _ => {}
        }
    }
    let record = DecisionRecord {
        thread: answering.thread.to_owned(),
        ns: view.ns,
        run_id: answering.run_id.map(str::to_owned),
        checkpoint: answering.checkpoint,
        interrupt: id,
        node: view.node,
        payload_type: view.payload_type.or_else(|| {
            view.kind
                .as_deref()
                .filter(|k| k.starts_with("hitl."))
                .map(str::to_owned)
        }),
        tools: governance.tools,
        answer: value.clone(),
        outcome,
        decided_by: answering.decided_by.cloned(),
        raised_at: governed.then_some(governance.raised_at),
        decided_at: answering.now,
        due_at: governance.expires_at,
        payload_digest: sha256_hex(view.value.get().as_bytes()),
        policy_digest: governance.policy_digest,
    };
    Ok((value, record))
}

/// What a kind without an in-place judge says of an answer: the stored payload decoded
/// into a `Value`, then its binding, normalization, check and (if the answer counts
/// toward a quorum) vote, each guarded against panics. `Err`: a stored payload that
/// does not decode, or a panic.
fn judge(
    validator: &dyn ResumeKind,
    kind: &str,
    payload: &RawValue,
    mut value: Value,
    counts: bool,
) -> Result<Result<(Value, Vote), Refusal>, Vec<String>> {
    let payload: Value = serde_json::from_str(payload.get())
        .map_err(|e| vec![format!("its stored payload does not decode: {e}")])?;
    let guarded = |what: &str| format!("the {what} of interrupt kind `{kind}`");
    let binding =
        crate::error::catching(|| guarded("binding check"), || validator.binding(&payload))
            .map_err(|e| vec![e.to_string()])?;
    if let Err(change) = binding {
        return Ok(Err(Refusal::Changed(change)));
    }
    let normalized = crate::error::catching(
        || guarded("normalization"),
        || validator.normalize(&payload, &value),
    )
    .map_err(|e| vec![e.to_string()])?;
    if let Some(normalized) = normalized {
        value = normalized;
    }
    let checked = crate::error::catching(|| guarded("check"), || validator.check(&payload, &value))
        .map_err(|e| vec![e.to_string()])?;
    if let Err(problems) = checked {
        return Ok(Err(Refusal::Invalid(problems)));
    }
    let vote = if counts {
        validator.vote(&payload, &value)
    } else {
        Vote::Decides
    };
    Ok(Ok((value, vote)))
}
