//! Starting a run from a `Command`: strict validation of resume answers against the
//! pending interrupts, then storing the answers and the command's update and gotos as
//! pending writes on the head. Nothing is stored unless everything is valid.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::commit::{assemble, encode_given};
use super::step::{Current, Runner};
use crate::checkpoint::WriteKind;
use crate::checkpoint::pending::{self, Collected, CommandPayload, ResumePayload};
use crate::error::{ResumeError, RunError};
use crate::graph::{Command, Resume};
use crate::ids::{InterruptId, TaskId};
use crate::interrupt::ResumeValidator;
use crate::state::State;

/// An answer accepted for storage: (task holding the interrupt, interrupt id, value).
type Accepted = (TaskId, InterruptId, Value);

impl<S: State> Runner<S> {
    /// The checkpoint a `Command` starts from: a new thread's first checkpoint (update
    /// and goto only), or the head with the command's writes stored on it.
    pub(super) async fn start_command(
        &mut self,
        head: Option<Current<S>>,
        command: Command<S>,
    ) -> Result<Current<S>, RunError> {
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
        if let Some(resume) = resume {
            let accepted = validate_resume(
                &self.graph.validators,
                &self.thread,
                &head.collected,
                resume,
            )?;
            let collected = &mut head.collected;
            for (owner, id, value) in accepted {
                let n = collected.resume_counts.entry(owner).or_default();
                let idx = WriteKind::RESUME_BASE_IDX - *n as i32;
                *n += 1;
                writes.push(pending::write(
                    owner,
                    idx,
                    WriteKind::Resume,
                    &ResumePayload {
                        interrupt: id,
                        value: value.clone(),
                    },
                ));
                collected.answers.insert(id, value);
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
            .put_writes(&self.thread, &self.ns, head.checkpoint.id, writes)
            .await?;
        head.collected.answers.shrink_to_fit();
        Ok(head)
    }
}

/// Checks a resume against the pending interrupts, strictly: a single value needs
/// exactly one pending interrupt; ids must be pending and answered once; each answer
/// must pass its interrupt kind's check and its stored schema.
pub(super) fn validate_resume(
    kinds: &HashMap<String, ResumeValidator>,
    thread: &str,
    collected: &Collected,
    resume: Resume,
) -> Result<Vec<Accepted>, ResumeError> {
    let pending = &collected.pending;
    if pending.is_empty() {
        return Err(ResumeError::NothingPending {
            thread: thread.to_owned(),
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
        let value = check_answer(kinds, collected, id, value)?;
        accepted.push((owner, id, value));
    }
    Ok(accepted)
}

/// Checks one answer with its interrupt's kind and stored schema; returns it as it is
/// stored (in the kind's canonical form, see [`crate::ResumeKind::normalize`]).
fn check_answer(
    kinds: &HashMap<String, ResumeValidator>,
    collected: &Collected,
    id: InterruptId,
    mut value: Value,
) -> Result<Value, ResumeError> {
    let invalid = |problems| ResumeError::InvalidValue { id, problems };
    let record = collected
        .record(id)
        .ok_or_else(|| invalid(vec!["its stored record is missing".into()]))?;
    let view = record
        .view()
        .map_err(|e| invalid(vec![format!("its stored record does not decode: {e}")]))?;
    if let Some(kind) = &view.kind {
        let validator = kinds
            .get(kind.as_ref())
            .ok_or_else(|| ResumeError::UnknownKind {
                id,
                kind: kind.to_string(),
            })?;
        let payload: Value = serde_json::from_str(view.value.get())
            .map_err(|e| invalid(vec![format!("its stored payload does not decode: {e}")]))?;
        let normalized = crate::error::catching(
            || format!("the normalization of interrupt kind `{kind}`"),
            || validator.normalize(&payload, &value),
        )
        .map_err(|e| invalid(vec![e.to_string()]))?;
        if let Some(normalized) = normalized {
            value = normalized;
        }
        crate::error::catching(
            || format!("the check of interrupt kind `{kind}`"),
            || validator.check(&payload, &value),
        )
        .map_err(|e| invalid(vec![e.to_string()]))?
        .map_err(invalid)?;
    }
    // A kind that derives the schema left it out; its check covers it.
    if let Some(schema) = view.resume_schema {
        crate::schema::validate_raw(schema, &value).map_err(invalid)?;
    }
    Ok(value)
}
