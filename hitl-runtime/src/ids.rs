//! Identifiers: nodes, checkpoints, tasks and interrupts.
//!
//! Checkpoint ids are UUIDv7 values (time-ordered, so lexicographic order is creation
//! order along a branch). Task and interrupt ids are 32-hex-digit xxh3-128 hashes of
//! where they live, so they are deterministic: the same task on the same checkpoint
//! always gets the same id, in any process.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::xxh3::Xxh3;

/// A node of a [`crate::StateGraph`], returned by [`crate::StateGraph::add_node`].
///
/// Edges take handles, not names, so an edge to a node that does not exist cannot be
/// written. A handle is only valid in the graph that created it.
pub struct NodeHandle<S> {
    pub(crate) graph: u64,
    pub(crate) index: u32,
    _state: PhantomData<fn() -> S>,
}

impl<S> NodeHandle<S> {
    pub(crate) fn new(graph: u64, index: usize) -> Self {
        NodeHandle {
            graph,
            index: index as u32,
            _state: PhantomData,
        }
    }

    pub(crate) fn index(self) -> usize {
        self.index as usize
    }
}

impl<S> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for NodeHandle<S> {}
impl<S> PartialEq for NodeHandle<S> {
    fn eq(&self, other: &Self) -> bool {
        self.graph == other.graph && self.index == other.index
    }
}
impl<S> Eq for NodeHandle<S> {}
impl<S> fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeHandle({})", self.index)
    }
}

/// The id of a checkpoint: a UUIDv7, time-ordered.
///
/// Channel versions are checkpoint ids too: a channel written by the step that produced
/// checkpoint `c` has version `c`. Along one branch, later checkpoints have larger ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(u128);

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A UUID's hyphenated lowercase text (as its `to_string`, without the formatting
/// machinery).
pub(crate) fn uuid_text(uuid: uuid::Uuid) -> String {
    uuid.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// A fresh, time-ordered id for a message (a UUIDv7's hyphenated text).
pub(crate) fn new_message_id() -> String {
    uuid_text(uuid::Uuid::now_v7())
}

/// The 32 lowercase hexadecimal digits of `value` (as `{:032x}`).
fn hex32(value: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((value >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
}

impl CheckpointId {
    /// A new id, greater than `after` if given (clocks may disagree across processes).
    pub fn new_after(after: Option<CheckpointId>) -> Self {
        let now = uuid::Uuid::now_v7().as_u128();
        match after {
            Some(prev) if prev.0 >= now => CheckpointId(prev.0 + 1),
            _ => CheckpointId(now),
        }
    }

    /// The raw 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Builds an id from its raw 128-bit value.
    pub fn from_u128(value: u128) -> Self {
        CheckpointId(value)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointId({self})")
    }
}

/// The error returned when a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id `{input}`: expected {expected}")]
pub struct ParseIdError {
    kind: &'static str,
    input: String,
    expected: &'static str,
}

impl FromStr for CheckpointId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(|u| CheckpointId(u.as_u128()))
            .map_err(|_| ParseIdError {
                kind: "checkpoint",
                input: s.to_owned(),
                expected: "a UUID such as `01890a5d-ac96-774b-bcce-b302099a8057`",
            })
    }
}

impl Serialize for CheckpointId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The Display text, written at once (not through the formatter).
        serializer.serialize_str(
            uuid::Uuid::from_u128(self.0)
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )
    }
}

impl<'de> Deserialize<'de> for CheckpointId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! hash_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u128);

        impl $name {
            /// The raw 128-bit value.
            pub fn as_u128(self) -> u128 {
                self.0
            }

            /// Builds an id from its raw 128-bit value.
            pub fn from_u128(value: u128) -> Self {
                $name(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hex = hex32(self.0);
                f.write_str(std::str::from_utf8(&hex).expect("ASCII hex digits"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:032x})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    if let Ok(v) = u128::from_str_radix(s, 16) {
                        return Ok($name(v));
                    }
                }
                Err(ParseIdError {
                    kind: $kind,
                    input: s.to_owned(),
                    expected: "32 hexadecimal digits",
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let hex = hex32(self.0);
                serializer.serialize_str(std::str::from_utf8(&hex).expect("ASCII hex digits"))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_id!(
    /// The id of a task: one node execution scheduled on one checkpoint.
    ///
    /// A hash of the checkpoint id, namespace, step, node name and position, so it is
    /// the same every time the task is re-run on that checkpoint.
    TaskId,
    "task"
);

hash_id!(
    /// The id of an interrupt: a hash of the task's namespace, the task id and the
    /// ordinal of the `interrupt()` call within the task. Stable until the thread
    /// writes its next checkpoint.
    InterruptId,
    "interrupt"
);

impl TaskId {
    /// The task that carries input-level writes (a `Command`'s update and goto).
    pub const NULL: TaskId = TaskId(0);

    pub(crate) fn derive(
        checkpoint: CheckpointId,
        ns: &str,
        step: i64,
        node: &str,
        position: usize,
    ) -> Self {
        let mut h = Xxh3::new();
        h.update(&checkpoint.0.to_le_bytes());
        h.update(ns.as_bytes());
        h.update(&[0]);
        h.update(&step.to_le_bytes());
        h.update(node.as_bytes());
        h.update(&[0]);
        h.update(&(position as u64).to_le_bytes());
        TaskId(h.digest128())
    }
}

impl InterruptId {
    pub(crate) fn derive(ns: &str, task: TaskId, ordinal: usize) -> Self {
        let mut h = Xxh3::new();
        h.update(ns.as_bytes());
        h.update(&[0]);
        h.update(&task.0.to_le_bytes());
        h.update(&(ordinal as u64).to_le_bytes());
        InterruptId(h.digest128())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_formatter() {
        for v in [
            0u128,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let id = TaskId::from_u128(v);
            assert_eq!(id.to_string(), format!("{v:032x}"));
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{v:032x}\""));
            let c = CheckpointId::from_u128(v);
            let text = uuid::Uuid::from_u128(v).hyphenated().to_string();
            assert_eq!(c.to_string(), text);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{text}\""));
            assert_eq!(uuid_text(uuid::Uuid::from_u128(v)), text);
        }
        let m = new_message_id();
        assert_eq!(m.parse::<uuid::Uuid>().unwrap().get_version_num(), 7);
    }

    #[test]
    fn checkpoint_ids_are_monotonic_after_parent() {
        let far_future = CheckpointId(u128::MAX - 5);
        let next = CheckpointId::new_after(Some(far_future));
        assert!(next > far_future);
        let a = CheckpointId::new_after(None);
        let b = CheckpointId::new_after(Some(a));
        assert!(b > a);
    }

    #[test]
    fn generated_uuids_are_version_7_and_distinct() {
        let a = CheckpointId::new_after(None);
        let b = CheckpointId::new_after(None);
        assert_ne!(a, b);
        let a = uuid::Uuid::from_u128(a.as_u128());
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn ids_round_trip_through_strings() {
        let c = CheckpointId::new_after(None);
        assert_eq!(c.to_string().parse::<CheckpointId>().unwrap(), c);
        let t = TaskId::derive(c, "", 3, "node", 1);
        assert_eq!(t.to_string().len(), 32);
        assert_eq!(t.to_string().parse::<TaskId>().unwrap(), t);
        let err = "xyz".parse::<InterruptId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interrupt id `xyz`: expected 32 hexadecimal digits"
        );
    }

    #[test]
    fn task_ids_depend_on_every_input() {
        let c = CheckpointId::from_u128(7);
        let base = TaskId::derive(c, "", 1, "a", 0);
        assert_eq!(base, TaskId::derive(c, "", 1, "a", 0));
        assert_ne!(
            base,
            TaskId::derive(CheckpointId::from_u128(8), "", 1, "a", 0)
        );
        assert_ne!(base, TaskId::derive(c, "sub", 1, "a", 0));
        assert_ne!(base, TaskId::derive(c, "", 2, "a", 0));
        assert_ne!(base, TaskId::derive(c, "", 1, "b", 0));
        assert_ne!(base, TaskId::derive(c, "", 1, "a", 1));
        assert_ne!(
            InterruptId::derive("", base, 0),
            InterruptId::derive("", base, 1)
        );
    }
}
