// Drives the example server with the official JS SDK (@langchain/langgraph-sdk):
// stream the demo agent to its review, check the thread and state, approve, check
// the result. Start the server first, then `node flow.mjs [URL]` (default
// http://127.0.0.1:2024, or HITL_SERVER_URL). Prints `N passed, M failed`; exits
// non-zero if anything failed.
import { Client } from "@langchain/langgraph-sdk";

const apiUrl = process.argv[2] ?? process.env.HITL_SERVER_URL ?? "http://127.0.0.1:2024";
const client = new Client({ apiUrl, apiKey: process.env.HITL_SERVER_TOKEN ?? null });

let passed = 0;
let failed = 0;
function check(name, condition, detail = "") {
  if (condition) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
}

const input = { messages: [{ role: "user", content: "Please clean up the workspace as my notes say." }] };

async function main() {
  const thread = await client.threads.create({ metadata: { via: "js-sdk" } });
  const threadId = thread.thread_id;

  let created = null;
  const events = [];
  for await (const chunk of client.runs.stream(threadId, "agent", {
    input,
    streamMode: ["values", "updates"],
    onRunCreated: (meta) => {
      created = meta;
    },
  })) {
    events.push(chunk);
  }
  check("stream: the first event is metadata", events[0]?.event === "metadata", events[0]);
  check("stream: onRunCreated got the run id", created?.run_id === events[0]?.data?.run_id, created);
  const paused = events.filter((e) => e.event === "values" && e.data?.__interrupt__);
  check("stream: values carry __interrupt__ at the pause", paused.length === 1, events.map((e) => e.event));
  const interrupt = paused[0]?.data.__interrupt__[0];
  const requested = interrupt?.value?.action_requests?.map((r) => r.name);
  check("stream: the review lists delete_file and send_email", JSON.stringify(requested) === '["delete_file","send_email"]', requested);

  const run = await client.runs.get(threadId, created.run_id);
  check("run: a run paused at an interrupt is `success`", run.status === "success", run.status);
  const t = await client.threads.get(threadId);
  check("thread: interrupted", t.status === "interrupted", t.status);
  const byTask = Object.values(t.interrupts ?? {});
  check("thread: interrupts keyed by task", byTask.length === 1 && byTask[0][0].id === interrupt.id, t.interrupts);
  const state = await client.threads.getState(threadId);
  check("state: the task carries the interrupt", state.tasks[0]?.interrupts[0]?.id === interrupt.id, state.tasks);

  let last = null;
  for await (const chunk of client.runs.stream(threadId, "agent", {
    command: { resume: { decisions: [{ type: "approve" }, { type: "approve" }] } },
    streamMode: ["values", "updates"],
  })) {
    if (chunk.event === "values") last = chunk.data;
  }
  const final = last?.messages?.at(-1);
  check("approve: the agent reports both actions", final?.type === "ai" && final.content.includes("Deleted old-report.txt") && final.content.includes("Sent"), final);
  const after = await client.threads.get(threadId);
  check("approve: the thread is idle with nothing pending", after.status === "idle" && Object.keys(after.interrupts).length === 0, after.status);
}

try {
  await main();
} catch (e) {
  failed += 1;
  console.log(`FAIL the flow raised: ${e?.stack ?? e}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
