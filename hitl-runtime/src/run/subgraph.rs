//! Subgraphs: a compiled graph run as a node of another, in its own checkpoint
//! namespace of the same thread.

use std::sync::Arc;

use futures_util::FutureExt;

use super::compiled::CompiledGraph;
use super::output::RunStatus;
use super::step::{Phase, Runner};
use crate::context::NodeContext;
use crate::error::{Interrupted, NodeError};
use crate::graph::{NodeHandle, NodeOutput, StateGraph};
use crate::state::State;

impl<S: State> StateGraph<S> {
    /// Adds a compiled graph as a node. `input` builds the subgraph's initial state
    /// from the parent's; `output` turns its final state into the parent's update.
    ///
    /// The subgraph checkpoints under its own namespace (`"{name}:{task_id}"`). When it
    /// interrupts, the parent task is interrupted with the same interrupts; on resume
    /// the subgraph continues from its own checkpoint, so its finished nodes do not run
    /// again.
    pub fn add_subgraph<T, I, O>(
        &mut self,
        name: &str,
        subgraph: CompiledGraph<T>,
        input: I,
        output: O,
    ) -> NodeHandle<S>
    where
        T: State,
        I: Fn(&S) -> T + Send + Sync + 'static,
        O: Fn(&T) -> S::Update + Send + Sync + 'static,
    {
        let input = Arc::new(input);
        let output = Arc::new(output);
        self.push_node(
            name,
            Arc::new(move |state: Arc<S>, cx: NodeContext| {
                let subgraph = subgraph.clone();
                let input = input.clone();
                let output = output.clone();
                async move {
                    let initial = input(&state);
                    drop(state);
                    let values = run_subgraph(&subgraph, initial, &cx).await?;
                    Ok(NodeOutput::update(output(&values)))
                }
                .boxed()
            }),
        )
    }
}

/// Runs a subgraph inside a parent task: continues its namespace's head if it has
/// one, else starts it from `initial`.
async fn run_subgraph<T: State>(
    subgraph: &CompiledGraph<T>,
    initial: T,
    cx: &NodeContext,
) -> Result<Arc<T>, NodeError> {
    let parent = &cx.task;
    let segment = format!("{}:{}", parent.node, parent.task_id);
    let ns: Arc<str> = if parent.ns.is_empty() {
        segment.into()
    } else {
        format!("{}|{segment}", parent.ns).into()
    };
    let graph = subgraph.inner.clone();
    let mut runner = Runner {
        before: graph.interrupt_before.clone(),
        after: graph.interrupt_after.clone(),
        limit: graph.recursion_limit,
        steps: 0,
        graph,
        saver: parent.run.saver.clone(),
        thread: parent.run.thread.clone(),
        ns,
        cfg: parent.run.config.clone(),
        sink: None,
        cacheable: true,
        shared: Some(parent.run.clone()),
        reviewer: parent.run.reviewer.clone(),
    };
    let current = match runner.load(None).await? {
        Some(head) => head,
        None => {
            runner
                .write_input(None, initial.into_update(), None)
                .await?
        }
    };
    let out = runner.drive(Phase::Plan(current)).await?;
    match out.status {
        RunStatus::Done => Ok(out.values),
        RunStatus::Interrupted => {
            cx.propagate(out.interrupts);
            Err(Interrupted.into())
        }
        RunStatus::Breakpoint => Err(NodeError::msg(
            "the subgraph stopped at a static breakpoint; breakpoints inside subgraphs are not supported",
        )),
    }
}
