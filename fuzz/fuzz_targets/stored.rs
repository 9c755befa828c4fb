//! Any stored bytes: a checkpoint record, a blob, a pending write. Reading them is an
//! error or a state, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::Arc;

use hitl_runtime::checkpoint::{
    Blob, BlobKind, Checkpoint, CheckpointWrite, PendingWrite, WriteKind,
};
use hitl_runtime::{Checkpointer, Command, InMemorySaver, Message, RunConfig, TaskId};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let (Some(record), Some(blob), Some(write)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // A record alone.
    let _ = serde_json::from_slice::<Checkpoint>(record);
    common::runtime().block_on(async {
        // A real paused thread, then one stored piece replaced.
        let agent = common::agent();
        let cfg = RunConfig::thread("t");
        let out = agent.invoke(Message::user("pay"), &cfg).await.unwrap();
        let saver = agent.checkpointer().unwrap().clone();
        let stored = saver.get("t", "", None, None).await.unwrap().unwrap();
        let target = Arc::new(InMemorySaver::new());
        let mut checkpoint = (*stored.checkpoint).clone();
        if let Ok(c) = serde_json::from_slice::<Checkpoint>(record) {
            checkpoint = c;
        }
        let mut blobs = stored.blobs.clone();
        if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(blob)
            && let Some(first) = blobs.first_mut()
        {
            *first = Blob {
                data: raw,
                kind: BlobKind::Full,
                ..first.clone()
            };
        }
        let _ = target
            .put(CheckpointWrite {
                thread: "t".into(),
                ns: String::new(),
                checkpoint: Arc::new(checkpoint.clone()),
                blobs,
                expected_head: None,
                head_writes: Vec::new(),
            })
            .await;
        let mut writes = stored.writes.clone();
        if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(write) {
            for kind in [WriteKind::Interrupt, WriteKind::Result, WriteKind::Command] {
                writes.push(PendingWrite {
                    task_id: TaskId::from_u128(7),
                    idx: 3,
                    kind,
                    value: raw.clone(),
                });
            }
        }
        let _ = target.put_writes("t", "", checkpoint.id, writes).await;
        let reader = hitl_runtime::agent::create_agent(hitl_runtime::testing::ScriptedModel::turns([
            Message::assistant("done"),
        ]))
        .tools(hitl_runtime::tools![common::transfer, common::read_file])
        .middleware(hitl_runtime::agent::HumanInTheLoop::from_tools())
        .checkpointer_arc(target)
        .build()
        .unwrap();
        let _ = reader.get_state(&cfg).await;
        let _ = reader.get_state_history(&cfg).await;
        if let Some(i) = out.interrupts.first() {
            let _ = reader
                .invoke(
                    Command::resume_by_id([(i.id, serde_json::json!({"decisions": [{"type": "approve"}]}))]),
                    &cfg,
                )
                .await;
        }
        let _ = reader.invoke(None, &cfg).await;
    });
});
