//! Checks of stored records: round trips, history, compare-and-set, pending writes.

use std::sync::Arc;

use serde_json::json;

use super::{Harness, checkpoint, full_blob, put_chain, write};
use crate::checkpoint::{
    BlobKind, ChannelVersion, CheckpointSource, CheckpointWrite, Checkpointer, DeltaChain,
    ListFilter, WriteKind,
};
use crate::error::CheckpointError;
use crate::ids::{CheckpointId, TaskId};

/// Every field of a checkpoint, its blobs and its writes survive a round trip.
pub async fn round_trip<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    assert!(saver.get("t", "", None, None).await.unwrap().is_none());
    assert_eq!(saver.head("t", "").await.unwrap(), None);
    let id = CheckpointId::new_after(None);
    let mut cp = checkpoint(id, None, -1);
    cp.channels.push(ChannelVersion {
        channel: "list".into(),
        version: id,
        delta: Some(DeltaChain {
            snapshot: id,
            snapshot_bytes: 9,
            delta_bytes: 0,
        }),
    });
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(cp.clone()),
            blobs: vec![
                full_blob("value", id, r#"{"n":0,"text":"héllo \"quoted\""}"#),
                full_blob("list", id, r#"["a","b"]"#),
            ],
            head_writes: Vec::new(),
            expected_head: None,
        })
        .await
        .unwrap();
    let writes = vec![
        write(1, 0, WriteKind::Result, r#"{"update":{"value":{"n":1}}}"#),
        write(
            2,
            WriteKind::ERROR_IDX,
            WriteKind::Error,
            r#"{"message":"boom"}"#,
        ),
        write(3, WriteKind::INTERRUPT_IDX, WriteKind::Interrupt, "[]"),
        write(0, 0, WriteKind::Command, r#"{"goto":[]}"#),
    ];
    saver.put_writes("t", "", id, writes.clone()).await.unwrap();

    assert_eq!(saver.head("t", "").await.unwrap(), Some(id));
    for got in [
        saver.get("t", "", None, None).await.unwrap().unwrap(),
        saver.get("t", "", Some(id), None).await.unwrap().unwrap(),
    ] {
        assert_eq!(*got.checkpoint, cp);
        let mut blobs: Vec<(String, String)> = got
            .blobs
            .iter()
            .map(|b| (b.channel.to_string(), b.data.get().to_owned()))
            .collect();
        blobs.sort();
        assert_eq!(
            blobs,
            [
                ("list".to_string(), r#"["a","b"]"#.to_string()),
                (
                    "value".to_string(),
                    r#"{"n":0,"text":"héllo \"quoted\""}"#.to_string()
                ),
            ]
        );
        assert!(
            got.blobs
                .iter()
                .all(|b| b.kind == BlobKind::Full && b.version == id)
        );
        let mut got_writes: Vec<_> = got
            .writes
            .iter()
            .map(|w| (w.task_id, w.idx, w.kind, w.value.get().to_owned()))
            .collect();
        got_writes.sort_by_key(|w| (w.0, w.1));
        let mut want: Vec<_> = writes
            .iter()
            .map(|w| (w.task_id, w.idx, w.kind, w.value.get().to_owned()))
            .collect();
        want.sort_by_key(|w| (w.0, w.1));
        assert_eq!(got_writes, want);
    }
    // `have` lets the backend skip blobs the caller already has, never writes.
    let light = saver.get("t", "", None, Some(id)).await.unwrap().unwrap();
    assert_eq!(*light.checkpoint, cp);
    assert_eq!(light.writes.len(), 4);
    assert!(
        saver
            .get("t", "", Some(CheckpointId::new_after(None)), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(saver.get("other", "", None, None).await.unwrap().is_none());
}

/// `list` is newest first, across branches, with working filters.
pub async fn history_order_and_filters<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 5).await;
    // A fork from the second checkpoint becomes the head.
    let fork = CheckpointId::new_after(Some(ids[4]));
    let mut fork_cp = checkpoint(fork, Some(ids[1]), 0);
    fork_cp.source = CheckpointSource::Fork;
    fork_cp.channels[0].version = ids[1];
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(fork_cp.clone()),
            blobs: vec![],
            head_writes: Vec::new(),
            expected_head: Some(ids[4]),
        })
        .await
        .unwrap();
    assert_eq!(saver.head("t", "").await.unwrap(), Some(fork));
    let all = saver.list("t", "", &ListFilter::default()).await.unwrap();
    let listed: Vec<_> = all.iter().map(|c| c.id).collect();
    let mut want = ids.clone();
    want.push(fork);
    want.reverse();
    assert_eq!(listed, want, "newest first, both branches");
    assert_eq!(all[0], fork_cp);

    let limited = saver
        .list(
            "t",
            "",
            &ListFilter {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.iter().map(|c| c.id).collect::<Vec<_>>(), want[..2]);
    let before = saver
        .list(
            "t",
            "",
            &ListFilter {
                before: Some(ids[2]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        before.iter().map(|c| c.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("step_tag".into(), json!(1));
    let tagged = saver
        .list(
            "t",
            "",
            &ListFilter {
                metadata,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tagged.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[2]]);
    // The fork reads the value of the version it points to.
    let got = saver.get("t", "", None, None).await.unwrap().unwrap();
    assert_eq!(got.blobs.len(), 1);
    assert_eq!(got.blobs[0].data.get(), r#"{"n":1}"#);
}

/// A put whose expected head is stale fails with `Conflict` and stores nothing.
pub async fn compare_and_set_on_the_head<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let stale = CheckpointId::new_after(Some(ids[1]));
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, Some(ids[0]), 0)),
            blobs: vec![full_blob("value", stale, r#"{"n":99}"#)],
            head_writes: Vec::new(),
            expected_head: Some(ids[0]),
        })
        .await
        .unwrap_err();
    match err {
        CheckpointError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(expected, Some(ids[0]));
            assert_eq!(actual, Some(ids[1]));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(saver.head("t", "").await.unwrap(), Some(ids[1]));
    assert!(
        saver
            .get("t", "", Some(stale), None)
            .await
            .unwrap()
            .is_none()
    );
    // A first write on a thread that already exists is a conflict too.
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, None, -1)),
            blobs: vec![],
            head_writes: Vec::new(),
            expected_head: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    // Namespaces have their own heads.
    put_chain(&saver, "t", "sub:1", 1).await;
    assert_eq!(saver.head("t", "").await.unwrap(), Some(ids[1]));
}

/// `head_writes` land on the old head with the new checkpoint, by their modes, and a
/// put that loses the compare-and-set stores none of them.
pub async fn head_writes_go_with_the_checkpoint<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let head = ids[1];
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""stored first""#)],
        )
        .await
        .unwrap();
    let writes_of = |id| {
        let saver = &saver;
        async move {
            let mut w: Vec<(TaskId, i32, String)> = saver
                .get("t", "", Some(id), None)
                .await
                .unwrap()
                .unwrap()
                .writes
                .into_iter()
                .map(|w| (w.task_id, w.idx, w.value.get().to_owned()))
                .collect();
            w.sort_by_key(|w| (w.0, w.1));
            w
        }
    };
    // Loses the compare-and-set: nothing of it is stored.
    let stale = CheckpointId::new_after(Some(head));
    let err = saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(stale, Some(ids[0]), 1)),
            blobs: vec![full_blob("value", stale, r#"{"n":7}"#)],
            head_writes: vec![write(2, 0, WriteKind::Result, r#""lost""#)],
            expected_head: Some(ids[0]),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    assert!(writes_of(ids[0]).await.is_empty());
    assert_eq!(writes_of(head).await.len(), 1);
    // Wins: the writes are on the old head, by their modes (a result already stored
    // is kept; an error is upserted), and the new checkpoint has none.
    let next = CheckpointId::new_after(Some(head));
    saver
        .put(CheckpointWrite {
            thread: "t".into(),
            ns: String::new(),
            checkpoint: Arc::new(checkpoint(next, Some(head), 2)),
            blobs: vec![full_blob("value", next, r#"{"n":2}"#)],
            head_writes: vec![
                write(1, 0, WriteKind::Result, r#""second""#),
                write(2, 0, WriteKind::Result, r#""with the checkpoint""#),
                write(
                    3,
                    WriteKind::ERROR_IDX,
                    WriteKind::Error,
                    r#"{"message":"boom"}"#,
                ),
            ],
            expected_head: Some(head),
        })
        .await
        .unwrap();
    assert_eq!(saver.head("t", "").await.unwrap(), Some(next));
    assert_eq!(
        writes_of(head).await,
        [
            (TaskId::from_u128(1), 0, r#""stored first""#.to_owned()),
            (
                TaskId::from_u128(2),
                0,
                r#""with the checkpoint""#.to_owned()
            ),
            (
                TaskId::from_u128(3),
                WriteKind::ERROR_IDX,
                r#"{"message":"boom"}"#.to_owned()
            ),
        ]
    );
    assert!(writes_of(next).await.is_empty());
}

/// Results are insert-if-absent, errors and interrupts upserted, resume answers
/// insert-or-conflict (and only on the head); batches are all or nothing.
pub async fn pending_writes_idempotency<H: Harness>(h: &H) {
    let saver = h.fresh().await;
    let ids = put_chain(&saver, "t", "", 2).await;
    let head = ids[1];
    let get = || async {
        let mut w: Vec<(TaskId, i32, String)> = saver
            .get("t", "", Some(head), None)
            .await
            .unwrap()
            .unwrap()
            .writes
            .into_iter()
            .map(|w| (w.task_id, w.idx, w.value.get().to_owned()))
            .collect();
        w.sort_by_key(|w| (w.0, w.1));
        w
    };
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""first""#)],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(1, 0, WriteKind::Result, r#""retry""#)],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::INTERRUPT_IDX,
                WriteKind::Interrupt,
                "[1]",
            )],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::INTERRUPT_IDX,
                WriteKind::Interrupt,
                "[2]",
            )],
        )
        .await
        .unwrap();
    saver
        .put_writes(
            "t",
            "",
            head,
            vec![write(
                2,
                WriteKind::RESUME_BASE_IDX,
                WriteKind::Resume,
                r#""yes""#,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        get().await,
        [
            (TaskId::from_u128(1), 0, r#""first""#.to_string()),
            (
                TaskId::from_u128(2),
                WriteKind::RESUME_BASE_IDX,
                r#""yes""#.to_string()
            ),
            (
                TaskId::from_u128(2),
                WriteKind::INTERRUPT_IDX,
                "[2]".to_string()
            ),
        ]
    );
    // A second answer in the same slot fails, and so does the rest of its batch.
    let err = saver
        .put_writes(
            "t",
            "",
            head,
            vec![
                write(9, 0, WriteKind::Result, r#""batched""#),
                write(2, WriteKind::RESUME_BASE_IDX, WriteKind::Resume, r#""no""#),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CheckpointError::WriteConflict { idx, .. } if idx == WriteKind::RESUME_BASE_IDX),
        "{err}"
    );
    assert_eq!(
        get().await.len(),
        3,
        "nothing of the failed batch was stored"
    );
    // Answers only land on the head.
    let err = saver
        .put_writes(
            "t",
            "",
            ids[0],
            vec![write(5, WriteKind::RESUME_BASE_IDX, WriteKind::Resume, "1")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    // Writes for a checkpoint of another thread stay there.
    assert!(saver.get("u", "", None, None).await.unwrap().is_none());
}
