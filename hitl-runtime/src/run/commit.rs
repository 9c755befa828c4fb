//! Making checkpoints. One builder, [`Draft`], makes every checkpoint a run or
//! `update_state` writes (input, step barrier, update, fork): the parent's state with
//! updates applied through the reducers, the versions and blobs of the channels that
//! changed, and the checkpoint record.

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::checkpoint::{Blob, Checkpoint, CheckpointSource, StepBlobs, TaskSpec, VersionsSeen};
use crate::error::{CheckpointError, RunError};
use crate::ids::{CheckpointId, now_ms};
use crate::state::{State, StateUpdate, StepWrites};

/// An update encoded channel by channel: (channel index, its JSON).
pub(super) type Pieces = Vec<(usize, Box<RawValue>)>;

/// Encodes an update channel by channel ([`assemble`] makes the whole JSON object).
pub(super) fn encode_update<S: State>(u: &S::Update) -> Result<Pieces, serde_json::Error> {
    let written = u.written();
    let mut pieces = Vec::with_capacity(written.iter().count());
    for ch in written.iter() {
        if let Some(raw) = u.encode_channel(ch)? {
            pieces.push((ch, raw));
        }
    }
    Ok(pieces)
}

/// Prepares and encodes an update that comes from outside a node (new input, a
/// command, `update_state`).
pub(super) fn encode_given<S: State>(
    writer: &str,
    update: &mut S::Update,
) -> Result<Pieces, RunError> {
    update.prepare();
    let pieces = encode_update::<S>(update).map_err(|source| RunError::InvalidUpdate {
        writer: writer.to_owned(),
        source,
    })?;
    if let Some(depth) = too_deep(&pieces) {
        return Err(RunError::TooDeep {
            writer: writer.to_owned(),
            depth,
        });
    }
    Ok(pieces)
}

/// How deep the deepest piece of an update nests, if deeper than
/// [`crate::MAX_JSON_DEPTH`].
pub(super) fn too_deep(pieces: &Pieces) -> Option<usize> {
    pieces
        .iter()
        .map(|(_, raw)| raw.get())
        // Each level takes two brackets: a shorter text cannot nest too deep, nor one
        // with no more opening brackets (in strings or not) than levels allowed.
        .filter(|text| text.len() >= 2 * (crate::MAX_JSON_DEPTH + 1))
        .filter(|text| {
            memchr::memchr2_iter(b'[', b'{', text.as_bytes())
                .nth(crate::MAX_JSON_DEPTH)
                .is_some()
        })
        .map(crate::schema::raw_depth)
        .max()
        .filter(|d| *d > crate::MAX_JSON_DEPTH)
}

/// Decodes a stored update, with its pieces.
pub(super) fn decode_update<S: State>(
    raw: &RawValue,
) -> Result<(S::Update, Pieces), serde_json::Error> {
    let update: S::Update = serde_json::from_str(raw.get())?;
    let pieces = encode_update::<S>(&update)?;
    Ok((update, pieces))
}

/// The JSON object of an encoded update. The pieces are valid JSON already, so they
/// are written as they are (not parsed again).
pub(super) fn assemble<S: State>(pieces: &Pieces) -> Box<RawValue> {
    serde_json::value::to_raw_value(&object::<S>(pieces)).expect("raw JSON pieces serialize")
}

/// What [`assemble`] writes, to be written inside a larger value.
pub(super) fn object<S: State>(pieces: &Pieces) -> Object<'_> {
    Object(pieces, S::channels())
}

/// The JSON object of an encoded update, serialized from its pieces.
pub(super) struct Object<'a>(&'a Pieces, &'static [crate::state::plumbing::ChannelSpec]);

impl serde::Serialize for Object<'_> {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (ch, raw) in self.0 {
            map.serialize_entry(self.1[*ch].name, &**raw)?;
        }
        map.end()
    }
}

/// A checkpoint made by [`Draft::finish`]: the record, its state, and the blobs of the
/// channels that changed.
pub(super) struct Made<S> {
    pub(super) checkpoint: Arc<Checkpoint>,
    pub(super) state: Arc<S>,
    pub(super) blobs: Vec<Blob>,
}

/// A checkpoint being made.
pub(super) struct Draft<S: State> {
    id: CheckpointId,
    source: CheckpointSource,
    /// The checkpoint whose channels this one starts from.
    base: Option<Arc<Checkpoint>>,
    parent_id: Option<CheckpointId>,
    step: i64,
    state: Arc<S>,
    writes: StepWrites,
    blobs: StepBlobs,
    seen: VersionsSeen,
}

impl<S: State> Draft<S> {
    fn new(
        source: CheckpointSource,
        base: Option<(Arc<Checkpoint>, Arc<S>)>,
        id: CheckpointId,
        parent_id: Option<CheckpointId>,
        step: i64,
    ) -> Self {
        let (base, state) = match base {
            Some((c, s)) => (Some(c), s),
            None => (None, Arc::new(S::default())),
        };
        Draft {
            id,
            source,
            seen: base
                .as_ref()
                .map(|b| b.versions_seen.clone())
                .unwrap_or_default(),
            base,
            parent_id,
            step,
            state,
            writes: StepWrites::new(S::channels()),
            blobs: StepBlobs::new(S::channels().len()),
        }
    }

    /// New input on top of the head (or of the default state on a new thread).
    pub(super) fn input(head: Option<(Arc<Checkpoint>, Arc<S>)>) -> Self {
        let parent = head.as_ref().map(|(c, _)| (c.id, c.step));
        Self::new(
            CheckpointSource::Input,
            head,
            CheckpointId::new_after(parent.map(|p| p.0)),
            parent.map(|p| p.0),
            parent.map_or(-1, |p| p.1 + 1),
        )
    }

    /// The checkpoint after a superstep on `parent`.
    pub(super) fn barrier(parent: Arc<Checkpoint>, state: Arc<S>) -> Self {
        let (id, step) = (parent.id, parent.step);
        Self::new(
            CheckpointSource::Loop,
            Some((parent, state)),
            CheckpointId::new_after(Some(id)),
            Some(id),
            step + 1,
        )
    }

    /// `update_state` on `base` (the head, or an older checkpoint), the head being
    /// `head`.
    pub(super) fn update(base: Arc<Checkpoint>, state: Arc<S>, head: CheckpointId) -> Self {
        let (id, step) = (base.id, base.step);
        Self::new(
            CheckpointSource::Update,
            Some((base, state)),
            CheckpointId::new_after(Some(head.max(id))),
            Some(id),
            step + 1,
        )
    }

    /// Time travel: a copy of the older checkpoint `old`, made the head after `head`.
    pub(super) fn fork(old: Arc<Checkpoint>, state: Arc<S>, head: CheckpointId) -> Self {
        let (id, step) = (old.id, old.step);
        Self::new(
            CheckpointSource::Fork,
            Some((old, state)),
            CheckpointId::new_after(Some(head.max(id))),
            Some(id),
            step,
        )
    }

    /// The id the checkpoint will have.
    pub(super) fn id(&self) -> CheckpointId {
        self.id
    }

    /// The state so far.
    pub(super) fn state(&self) -> &S {
        &self.state
    }

    /// The scheduled tasks of the base checkpoint.
    pub(super) fn base_next(&self) -> Vec<TaskSpec> {
        self.base
            .as_ref()
            .map(|b| b.next.clone())
            .unwrap_or_default()
    }

    /// Which checkpoint each node saw last; the barrier records the nodes that ran.
    pub(super) fn seen_mut(&mut self) -> &mut VersionsSeen {
        &mut self.seen
    }

    /// Applies an update written by `writer` through the reducers, recording the
    /// deltas of delta channels.
    pub(super) fn apply(
        &mut self,
        writer: &Arc<str>,
        update: S::Update,
        pieces: &Pieces,
    ) -> Result<(), RunError> {
        let channels = S::channels();
        for (ch, raw) in pieces {
            if channels[*ch].reducer.is_delta() {
                self.blobs.push_delta(*ch, raw);
            }
        }
        self.writes.set_writer(writer.clone());
        let state = Arc::make_mut(&mut self.state);
        let writes = &mut self.writes;
        crate::error::catching(
            || format!("a reducer applying the update of `{writer}`"),
            || state.apply(update, writes),
        )??;
        Ok(())
    }

    /// The checkpoint record, its state, and the blobs of the channels that changed.
    pub(super) fn finish(
        self,
        thread: &str,
        next: Vec<TaskSpec>,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Made<S>, RunError> {
        let (channels, blobs) = match (&self.base, self.source) {
            // A fork copies the old checkpoint's channels as they are.
            (Some(old), CheckpointSource::Fork) => (old.channels.clone(), Vec::new()),
            _ => {
                let (blobs, base, state) = (self.blobs, self.base.as_deref(), &*self.state);
                let written = self.writes.written();
                crate::error::catching(
                    || "serializing the state".to_owned(),
                    || blobs.finish(base, state, written, self.id),
                )?
                .map_err(CheckpointError::decoding(thread, "channel values"))?
            }
        };
        let checkpoint = Checkpoint {
            id: self.id,
            parent_id: self.parent_id,
            step: self.step,
            source: self.source,
            created_at_ms: now_ms(),
            channels,
            versions_seen: self.seen,
            next,
            metadata,
        };
        Ok(Made {
            checkpoint: Arc::new(checkpoint),
            state: self.state,
            blobs,
        })
    }
}
