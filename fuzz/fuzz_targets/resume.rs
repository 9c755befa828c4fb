//! Any resume value a client can send: refused without changing anything, or taken.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use hitl_runtime::{Command, Message, RunConfig, RunError};
use libfuzzer_sys::fuzz_target;

static THREAD: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    common::runtime().block_on(async {
        let agent = common::agent();
        let cfg = RunConfig::thread(format!("t{}", THREAD.fetch_add(1, Ordering::Relaxed)));
        let out = agent.invoke(Message::user("pay"), &cfg).await.unwrap();
        assert!(out.is_interrupted());
        let id = out.interrupts[0].id;
        let before = agent.get_state(&cfg).await.unwrap();
        for command in [
            Command::resume(value.clone()),
            Command::resume_by_id([(id, value.clone())]),
        ] {
            match agent.invoke(command, &cfg).await {
                Err(RunError::Resume(_)) => {
                    // Refused: nothing changed, the same interrupt is pending.
                    let after = agent.get_state(&cfg).await.unwrap();
                    assert_eq!(after.checkpoint_id, before.checkpoint_id);
                    assert_eq!(after.interrupts, before.interrupts);
                }
                Err(e) => panic!("a resume failed other than as refused: {e}"),
                Ok(_) => return,
            }
        }
    });
});
