//! Stream modes: which events a run streams.

use std::ops::BitOr;

/// One kind of stream output. Combine them with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamMode {
    /// The whole state after each superstep (and once at the start of a continued run).
    Values,
    /// Each finished task's update.
    Updates,
    /// Model tokens, from agents' chat models.
    Messages,
    /// What nodes write with [`crate::NodeContext::writer`].
    Custom,
    /// Task starts and ends.
    Tasks,
    /// Each checkpoint written, as a state snapshot.
    Checkpoints,
    /// Tasks and checkpoints.
    Debug,
}

impl StreamMode {
    fn bit(self) -> u8 {
        match self {
            StreamMode::Values => 1,
            StreamMode::Updates => 2,
            StreamMode::Messages => 4,
            StreamMode::Custom => 8,
            StreamMode::Tasks => 16,
            StreamMode::Checkpoints => 32,
            StreamMode::Debug => 16 | 32,
        }
    }
}

/// A set of stream modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamModes(u8);

impl StreamModes {
    /// No mode: only interrupts are streamed.
    pub const NONE: StreamModes = StreamModes(0);

    /// Whether `mode` is in the set.
    pub fn contains(self, mode: StreamMode) -> bool {
        self.0 & mode.bit() == mode.bit()
    }
}

impl From<StreamMode> for StreamModes {
    fn from(m: StreamMode) -> Self {
        StreamModes(m.bit())
    }
}

impl BitOr for StreamMode {
    type Output = StreamModes;
    fn bitor(self, rhs: StreamMode) -> StreamModes {
        StreamModes(self.bit() | rhs.bit())
    }
}

impl BitOr<StreamMode> for StreamModes {
    type Output = StreamModes;
    fn bitor(self, rhs: StreamMode) -> StreamModes {
        StreamModes(self.0 | rhs.bit())
    }
}
