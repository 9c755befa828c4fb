//! Runs recorded once against a real model (gemma-3-270m served by llama.cpp's
//! `llama-server`, through `scripts/local-model.sh --auto approve|reject --record ..`),
//! replayed offline: the same agent, the model's recorded turns, the recorded answers.
//! A change in how hitl turns model output into calls, reviews and tool results shows
//! up as a transcript diff.

#[allow(dead_code)]
#[path = "../demo_agent.rs"]
mod demo_agent;

use hitl_runtime::testing::{Fixture, Transcript, run_with_reviewer};
use hitl_runtime::{RunConfig, SqliteSaver};

/// The message `scripts/local-model.sh` sends.
const MESSAGE: &str = "Delete old-report.txt. Reply only with:
<tool_call>
{\"name\": \"delete_file\", \"arguments\": {\"path\": \"old-report.txt\"}}
</tool_call>";

async fn replay(fixture: &str) -> Transcript {
    let path = format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let fixture = Fixture::load(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saver = SqliteSaver::open(dir.path().join("replay.db"))
        .await
        .unwrap();
    let agent = demo_agent::agent_with(fixture.model(), saver).unwrap();
    run_with_reviewer(
        &agent,
        MESSAGE,
        &RunConfig::thread("replay"),
        &fixture.reviewer(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_approved_deletion_recorded_from_a_real_model() {
    let t = replay("gemma-approve.json").await;
    assert_eq!(t.reviews(), 1);
    insta::assert_snapshot!(t.to_string());
}

#[tokio::test]
async fn a_rejected_deletion_recorded_from_a_real_model() {
    let t = replay("gemma-reject.json").await;
    assert_eq!(t.reviews(), 1);
    insta::assert_snapshot!(t.to_string());
}
