//! Turning states into blobs and back, including delta chains.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::{Blob, BlobKind, ChannelVersion, Checkpoint, DeltaChain, StoredCheckpoint};
use crate::error::CheckpointError;
use crate::ids::CheckpointId;
use crate::state::{ChannelMask, State};

/// Deltas shorter than this are never worth a snapshot on their own.
const MIN_SNAPSHOT_THRESHOLD: u64 = 4096;

/// Rebuilds a state from a stored checkpoint.
///
/// A channel the checkpoint does not list, or lists but the state does not have, is
/// an error, and so is a listed channel whose blob is missing or does not decode.
pub(crate) fn materialize<S: State>(
    thread: &str,
    stored: &StoredCheckpoint,
) -> Result<S, CheckpointError> {
    let mut state = S::default();
    // Every checkpoint lists every channel of the state that wrote it: a channel
    // missing, or one this state does not have, is damage or a changed state type,
    // and loading it as a default would lose data silently.
    if let Some(unknown) = stored
        .checkpoint
        .channels
        .iter()
        .find(|cv| !S::channels().iter().any(|spec| *cv.channel == *spec.name))
    {
        return Err(CheckpointError::corrupt(
            thread,
            format!(
                "checkpoint {} has channel `{}`, which the state type `{}` does not have \
                 (was a field renamed or removed? migrate the stored threads first)",
                stored.checkpoint.id,
                unknown.channel,
                std::any::type_name::<S>()
            ),
        ));
    }
    for (index, spec) in S::channels().iter().enumerate() {
        let Some(cv) = stored.checkpoint.channel(spec.name) else {
            return Err(CheckpointError::corrupt(
                thread,
                format!(
                    "checkpoint {} has no channel `{}` of the state type `{}` (was the \
                     record damaged, or the field added after it was written? migrate the \
                     stored threads first)",
                    stored.checkpoint.id,
                    spec.name,
                    std::any::type_name::<S>()
                ),
            ));
        };
        let decode_err = |source| CheckpointError::Decode {
            thread: thread.to_owned(),
            what: format!("channel `{}` at version {}", spec.name, cv.version),
            source,
        };
        // Walk back from the current version to a full blob.
        let mut chain: Vec<&Blob> = Vec::new();
        let mut version = cv.version;
        loop {
            let blob = stored
                .blobs
                .iter()
                .find(|b| &*b.channel == spec.name && b.version == version)
                .ok_or_else(|| {
                    CheckpointError::corrupt(
                        thread,
                        format!(
                            "checkpoint {} needs blob {} of channel `{}`, which is missing",
                            stored.checkpoint.id, version, spec.name
                        ),
                    )
                })?;
            chain.push(blob);
            match blob.kind {
                BlobKind::Full => break,
                BlobKind::Delta { base } => {
                    if chain.len() > stored.blobs.len() {
                        return Err(CheckpointError::corrupt(
                            thread,
                            format!("delta chain of channel `{}` loops", spec.name),
                        ));
                    }
                    version = base;
                }
            }
        }
        let (snapshot, deltas) = chain.split_last().expect("chain has at least one blob");
        state
            .decode_channel(index, &snapshot.data)
            .map_err(decode_err)?;
        for delta in deltas.iter().rev() {
            state
                .replay_channel(index, &delta.data)
                .map_err(decode_err)?;
        }
    }
    Ok(state)
}

/// Collects, during one superstep, what each delta channel was written, as JSON
/// arrays concatenated in write order.
#[derive(Debug)]
pub(crate) struct StepBlobs {
    deltas: Vec<Option<String>>,
}

impl StepBlobs {
    pub(crate) fn new(channels: usize) -> Self {
        StepBlobs {
            deltas: vec![None; channels],
        }
    }

    /// Records the JSON array one update wrote to a delta channel.
    pub(crate) fn push_delta(&mut self, channel: usize, items: &RawValue) {
        let text = items.get().trim();
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text)
            .trim();
        let slot = self.deltas[channel].get_or_insert_with(|| String::from("["));
        if !inner.is_empty() {
            if slot.len() > 1 {
                slot.push(',');
            }
            slot.push_str(inner);
        }
    }

    /// The versions and blobs of the checkpoint `id`, whose step wrote `written`.
    ///
    /// Channels not written keep the parent's version. Delta channels store what the
    /// step appended, chained to the parent's version, until the deltas since the last
    /// snapshot outgrow it; then they store a new full snapshot.
    pub(crate) fn finish<S: State>(
        mut self,
        parent: Option<&Checkpoint>,
        state: &S,
        written: ChannelMask,
        id: CheckpointId,
    ) -> Result<(Vec<ChannelVersion>, Vec<Blob>), serde_json::Error> {
        let mut versions = Vec::with_capacity(S::channels().len());
        let mut blobs = Vec::new();
        for (index, spec) in S::channels().iter().enumerate() {
            let previous = parent.and_then(|p| p.channel(spec.name));
            if !written.contains(index)
                && let Some(prev) = previous
            {
                versions.push(prev.clone());
                continue;
            }
            // The parent's name, shared; a first checkpoint allocates it.
            let name: Arc<str> =
                previous.map_or_else(|| Arc::from(spec.name), |p| p.channel.clone());
            let delta_data = self.deltas[index].take();
            match (spec.reducer.is_delta(), previous, delta_data) {
                (true, Some(prev), Some(mut data)) if prev.delta.is_some() => {
                    let chain = prev.delta.expect("checked");
                    let delta_len = data.len() as u64 + 1;
                    let threshold = chain.snapshot_bytes.max(MIN_SNAPSHOT_THRESHOLD);
                    if chain.delta_bytes + delta_len <= threshold {
                        data.push(']');
                        blobs.push(Blob {
                            channel: name.clone(),
                            version: id,
                            kind: BlobKind::Delta { base: prev.version },
                            data: RawValue::from_string(data)?,
                        });
                        versions.push(ChannelVersion {
                            channel: name.clone(),
                            version: id,
                            delta: Some(DeltaChain {
                                delta_bytes: chain.delta_bytes + delta_len,
                                ..chain
                            }),
                        });
                        continue;
                    }
                }
                _ => {}
            }
            let data = state.encode_channel(index)?;
            let bytes = data.get().len() as u64;
            blobs.push(Blob {
                channel: name.clone(),
                version: id,
                kind: BlobKind::Full,
                data,
            });
            versions.push(ChannelVersion {
                channel: name.clone(),
                version: id,
                delta: spec.reducer.is_delta().then_some(DeltaChain {
                    snapshot: id,
                    snapshot_bytes: bytes,
                    delta_bytes: 0,
                }),
            });
        }
        Ok((versions, blobs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_concatenate_json_arrays() {
        let mut s = StepBlobs::new(1);
        s.push_delta(0, &RawValue::from_string("[1, 2]".into()).unwrap());
        s.push_delta(0, &RawValue::from_string("[]".into()).unwrap());
        s.push_delta(0, &RawValue::from_string("[3]".into()).unwrap());
        assert_eq!(s.deltas[0].as_deref(), Some("[1, 2,3"));
    }
}
