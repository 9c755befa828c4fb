//! Single transitions of the step machine, driven one at a time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::input::Input;
use super::output::RunStatus;
use super::step::{Pause, Phase, Runner};
use crate::checkpoint::InMemorySaver;
use crate::context::{NodeContext, RunConfig};
use crate::error::{NodeError, RunError};
use crate::graph::{END, START, StateGraph};
use crate::run::CompiledGraph;
use crate::{Command, State};

#[derive(State, Clone, Debug, Default, Serialize, Deserialize)]
struct Log {
    #[state(reducer = append)]
    log: Vec<String>,
}

async fn push(_: Arc<Log>, cx: NodeContext) -> Result<LogUpdate, NodeError> {
    Ok(LogUpdate::default().log(vec![cx.node().to_owned()]))
}

async fn ask(_: Arc<Log>, cx: NodeContext) -> Result<LogUpdate, NodeError> {
    let answer: String = cx.interrupt(serde_json::json!("name?")).await?.to_string();
    Ok(LogUpdate::default().log(vec![answer]))
}

async fn boom(_: Arc<Log>, _: NodeContext) -> Result<LogUpdate, NodeError> {
    Err(NodeError::msg("boom"))
}

/// START -> a -> b -> END, with `b` one of `push`, `ask`, `boom`.
fn graph<F, Fut>(b: F) -> CompiledGraph<Log>
where
    F: Fn(Arc<Log>, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<LogUpdate, NodeError>> + Send + 'static,
{
    let mut g = StateGraph::<Log>::new();
    let a = g.add_node("a", push);
    let b = g.add_node("b", b);
    g.add_edge(START, a);
    g.add_edge(a, b);
    g.add_edge(b, END);
    g.compile()
        .checkpointer(InMemorySaver::new())
        .build()
        .unwrap()
}

fn runner(app: &CompiledGraph<Log>, input: &Input<Log>, cfg: &RunConfig) -> Runner<Log> {
    Runner::root(&app.inner, input, cfg, None).unwrap()
}

/// Steps along `path`, asserting each phase's name, and returns the last phase.
async fn step_through(r: &mut Runner<Log>, mut phase: Phase<Log>, path: &[&str]) -> Phase<Log> {
    let (last, before) = path.split_last().expect("a path");
    for expected in before {
        assert_eq!(phase.name(), *expected);
        phase = r.step(phase).await;
    }
    assert_eq!(phase.name(), *last);
    phase
}

#[tokio::test]
async fn start_writes_the_input_checkpoint_and_plans_it() {
    let app = graph(push);
    let cfg = RunConfig::thread("t");
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let Phase::Plan(current) = r.step(Phase::Start(input)).await else {
        panic!("start leads to plan");
    };
    assert!(current.created_here);
    assert_eq!(current.checkpoint.step, -1);
    assert_eq!(&*current.checkpoint.next[0].node, "a");
    // The input checkpoint is stored: it is the thread's head.
    let head = app.get_state(&cfg).await.unwrap();
    assert_eq!(head.checkpoint_id, current.checkpoint.id);
}

#[tokio::test]
async fn plan_run_barrier_then_plan_of_nothing_is_done() {
    let app = graph(push);
    let cfg = RunConfig::thread("t");
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let phase = step_through(
        &mut r,
        Phase::Start(input),
        &[
            "start", "plan", "run", "barrier", "plan", "run", "barrier", "plan", "done",
        ],
    )
    .await;
    let Phase::Done(exit) = phase else {
        unreachable!()
    };
    let out = exit.result.unwrap();
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(out.values.log, ["a", "b"]);
    // The single exit keeps the final state for the next run.
    assert_eq!(exit.at.unwrap().0, out.checkpoint_id.unwrap());
    assert_eq!(r.steps, 2);
}

#[tokio::test]
async fn run_with_an_interrupt_pauses_with_every_pending_interrupt() {
    let app = graph(ask);
    let cfg = RunConfig::thread("t");
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let phase = step_through(
        &mut r,
        Phase::Start(input),
        &["start", "plan", "run", "barrier", "plan", "run", "pause"],
    )
    .await;
    let Phase::Pause(
        current,
        Pause::Interrupted {
            interrupts, next, ..
        },
    ) = phase
    else {
        panic!("the run pauses at the interrupt");
    };
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0].value, "name?");
    assert_eq!(next, ["b"]);
    // No checkpoint was written for the paused step: the head is still `a`'s.
    assert_eq!(current.checkpoint.step, 0);
    let Phase::Done(exit) = r
        .step(Phase::Pause(current, Pause::Breakpoint(Vec::new())))
        .await
    else {
        panic!("pause leads to done");
    };
    assert_eq!(exit.result.unwrap().status, RunStatus::Breakpoint);
}

#[tokio::test]
async fn a_resume_starts_at_the_head_with_its_answer_stored() {
    let app = graph(ask);
    let cfg = RunConfig::thread("t");
    let out = app.invoke(Log::default(), &cfg).await.unwrap();
    let head = out.checkpoint_id.unwrap();
    let input = Input::from(Command::resume("Ada"));
    let mut r = runner(&app, &input, &cfg);
    let Phase::Plan(current) = r.step(Phase::Start(input)).await else {
        panic!("start leads to plan");
    };
    assert_eq!(current.checkpoint.id, head);
    assert!(!current.created_here);
    assert!(current.collected.pending.is_empty());
    assert_eq!(current.collected.answers.len(), 1);
    let Phase::Run(current, planned) = r.step(Phase::Plan(current)).await else {
        panic!("plan leads to run");
    };
    assert_eq!(planned.len(), 1);
    let Phase::Barrier(..) = r.step(Phase::Run(current, planned)).await else {
        panic!("the answered task finishes");
    };
}

#[tokio::test]
async fn a_failing_task_fails_the_run_and_keeps_the_checkpoint() {
    let app = graph(boom);
    let cfg = RunConfig::thread("t");
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let phase = step_through(
        &mut r,
        Phase::Start(input),
        &["start", "plan", "run", "barrier", "plan", "run", "fail"],
    )
    .await;
    let Phase::Fail(Some(current), RunError::NodeFailed { node, message, .. }) = phase else {
        panic!("the run fails at `b`");
    };
    assert_eq!((node.as_str(), message.as_str()), ("b", "boom"));
    let at = current.checkpoint.id;
    let Phase::Done(exit) = r
        .step(Phase::Fail(Some(current), RunError::Cancelled))
        .await
    else {
        panic!("fail leads to done");
    };
    assert_eq!(exit.at.unwrap().0, at);
    assert!(matches!(exit.result, Err(RunError::Cancelled)));
}

#[tokio::test]
async fn plan_at_the_recursion_limit_fails() {
    let app = graph(push);
    let cfg = RunConfig::thread("t").recursion_limit(0);
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let plan = r.step(Phase::Start(input)).await;
    let Phase::Fail(Some(_), RunError::RecursionLimit { limit: 0 }) = r.step(plan).await else {
        panic!("plan fails at the limit");
    };
}

#[tokio::test]
async fn plan_before_a_breakpoint_pauses_without_running() {
    let app = graph(push);
    let b = app.node("b").unwrap();
    let cfg = RunConfig::thread("t").interrupt_before([b]);
    let input = Input::from(Log::default());
    let mut r = runner(&app, &input, &cfg);
    let phase = step_through(
        &mut r,
        Phase::Start(input),
        &["start", "plan", "run", "barrier", "plan", "pause"],
    )
    .await;
    let Phase::Pause(current, Pause::Breakpoint(planned)) = phase else {
        panic!("a breakpoint pause");
    };
    assert_eq!(planned.len(), 1);
    assert_eq!(current.state.log, ["a"]);
}
