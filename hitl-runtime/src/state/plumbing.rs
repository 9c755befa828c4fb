//! Plumbing for the code `#[derive(State)]` generates and for the checkpointers:
//! channels, write masks, the single-writer rule and the built-in reducers.
//!
//! Not part of the public API: no semver guarantees. Generated code reaches it through
//! `hitl_runtime::__private`.

use std::sync::Arc;

use crate::error::ReducerError;

/// How writes to a channel combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReducerKind {
    /// The written value replaces the old one; two writes in one superstep are an error.
    LastValue,
    /// The written list is appended. Stored as deltas.
    Append,
    /// The written messages are appended, or replace the message with the same id.
    /// Stored as deltas.
    Messages,
    /// A user function `fn(&mut T, T)` folds each write into the value.
    Custom,
}

impl ReducerKind {
    /// Whether checkpoints store what a step wrote (a delta) rather than the whole value.
    pub fn is_delta(self) -> bool {
        matches!(self, ReducerKind::Append | ReducerKind::Messages)
    }
}

/// One channel of a state: a field, its name and its reducer.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSpec {
    /// The field name; the channel's name in checkpoints.
    pub name: &'static str,
    /// How writes combine.
    pub reducer: ReducerKind,
}

/// A set of channels, as a bit mask over channel indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelMask(pub u64);

impl ChannelMask {
    /// The empty set.
    pub const EMPTY: ChannelMask = ChannelMask(0);

    /// Adds a channel.
    pub fn insert(&mut self, channel: usize) {
        self.0 |= 1 << channel;
    }

    /// Whether a channel is in the set.
    pub fn contains(self, channel: usize) -> bool {
        self.0 & (1 << channel) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channel indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| self.0 & (1u64 << i) != 0)
    }

    /// The union of two sets.
    pub fn union(self, other: ChannelMask) -> ChannelMask {
        ChannelMask(self.0 | other.0)
    }
}

/// The channels written during one superstep; enforces the single-writer rule of
/// last-value channels.
#[derive(Debug)]
pub struct StepWrites {
    channels: &'static [ChannelSpec],
    written: ChannelMask,
    writer: Option<Arc<str>>,
    writers: Vec<Option<Arc<str>>>,
}

impl StepWrites {
    /// Starts recording a superstep for a state with these channels.
    pub fn new(channels: &'static [ChannelSpec]) -> Self {
        StepWrites {
            channels,
            written: ChannelMask::EMPTY,
            writer: None,
            writers: vec![None; channels.len()],
        }
    }

    /// Names the writer of the next updates (a node name), for error messages.
    pub fn set_writer(&mut self, writer: impl Into<Arc<str>>) {
        self.writer = Some(writer.into());
    }

    /// Records a write to `channel`. Fails on a second write to a last-value channel.
    pub fn mark(&mut self, channel: usize) -> Result<(), ReducerError> {
        let spec = &self.channels[channel];
        if spec.reducer == ReducerKind::LastValue && self.written.contains(channel) {
            return Err(ReducerError::ConcurrentWrite {
                channel: spec.name,
                first: self.writers[channel]
                    .as_deref()
                    .unwrap_or("input")
                    .to_owned(),
                second: self.writer.as_deref().unwrap_or("input").to_owned(),
            });
        }
        self.written.insert(channel);
        self.writers[channel] = self.writer.clone();
        Ok(())
    }

    /// The channels written so far.
    pub fn written(&self) -> ChannelMask {
        self.written
    }
}

/// The reducers `#[derive(State)]` generates calls to.
pub mod reducers {
    use crate::state::MessageLike;

    /// `append`: extends the list.
    pub fn append<T>(slot: &mut Vec<T>, value: Vec<T>) {
        slot.extend(value);
    }

    /// `messages`: each message replaces the one with the same id, searching from the
    /// end, or is appended.
    pub fn add_messages<M: MessageLike>(slot: &mut Vec<M>, value: Vec<M>) {
        for message in value {
            let found = message.message_id().and_then(|id| position_of(slot, id));
            match found {
                Some(i) => slot[i] = message,
                None => slot.push(message),
            }
        }
    }

    /// The last message with this id. Ids are compared by their last eight bytes first
    /// (the random part of a generated id), which rules out almost every message
    /// without a call to `memcmp`: a long conversation is searched at memory speed.
    fn position_of<M: MessageLike>(slot: &[M], id: &str) -> Option<usize> {
        fn tail(s: &str) -> u64 {
            let b = s.as_bytes();
            match b.len().checked_sub(8) {
                Some(start) => u64::from_le_bytes(b[start..].try_into().unwrap_or_default()),
                None => b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x)),
            }
        }
        let (len, key) = (id.len(), tail(id));
        slot.iter().rposition(|m| {
            m.message_id()
                .is_some_and(|other| other.len() == len && tail(other) == key && other == id)
        })
    }

    /// Gives each message without an id a fresh, time-ordered one.
    pub fn assign_message_ids<M: MessageLike>(messages: &mut [M]) {
        for m in messages {
            if m.message_id().is_none() {
                m.set_message_id(crate::ids::new_message_id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MessageLike;

    #[derive(Debug, Clone, PartialEq)]
    struct M(Option<String>, &'static str);
    impl MessageLike for M {
        fn message_id(&self) -> Option<&str> {
            self.0.as_deref()
        }
        fn set_message_id(&mut self, id: String) {
            self.0 = Some(id);
        }
    }

    #[test]
    fn add_messages_replaces_by_id_and_appends_the_rest() {
        let mut list = vec![M(Some("a".into()), "1"), M(Some("b".into()), "2")];
        reducers::add_messages(
            &mut list,
            vec![M(Some("a".into()), "1'"), M(Some("c".into()), "3")],
        );
        assert_eq!(
            list,
            vec![
                M(Some("a".into()), "1'"),
                M(Some("b".into()), "2"),
                M(Some("c".into()), "3")
            ]
        );
    }

    #[test]
    fn add_messages_matches_whole_ids_not_just_their_ends() {
        // Same length and same last eight bytes, different ids.
        let a = "msg-0001-same-tail".to_owned();
        let b = "msg-0002-same-tail".to_owned();
        let mut list = vec![M(Some(a.clone()), "1"), M(Some(b.clone()), "2")];
        reducers::add_messages(
            &mut list,
            vec![
                M(Some(a.clone()), "1'"),
                M(Some("msg-0003-same-tail".into()), "3"),
            ],
        );
        assert_eq!(
            list,
            vec![
                M(Some(a), "1'"),
                M(Some(b), "2"),
                M(Some("msg-0003-same-tail".into()), "3")
            ]
        );
    }

    #[test]
    fn assigned_ids_are_unique() {
        let mut list = vec![M(None, "x"), M(None, "y"), M(Some("k".into()), "z")];
        reducers::assign_message_ids(&mut list);
        assert_ne!(list[0].0, list[1].0);
        assert_eq!(list[2].0.as_deref(), Some("k"));
    }

    #[test]
    fn second_last_value_write_in_a_step_is_an_error() {
        static CH: [ChannelSpec; 2] = [
            ChannelSpec {
                name: "step",
                reducer: ReducerKind::LastValue,
            },
            ChannelSpec {
                name: "log",
                reducer: ReducerKind::Append,
            },
        ];
        let mut w = StepWrites::new(&CH);
        w.set_writer("a");
        w.mark(0).unwrap();
        w.mark(1).unwrap();
        w.set_writer("b");
        w.mark(1).unwrap();
        let err = w.mark(0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "channel `step` was written by `a` and `b` in the same superstep; a last-value \
             channel takes one write per step: give it a reducer \
             (`#[state(reducer = append)]` or a function) or write it from one node"
        );
    }
}
