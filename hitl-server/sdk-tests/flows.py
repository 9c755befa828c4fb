#!/usr/bin/env python3
"""Drives the example server with the official Python SDK (langgraph_sdk).

Start the server first (`cargo run -p hitl-examples --example server -- --port 2024`),
then run `python flows.py [URL]` (default http://127.0.0.1:2024, or HITL_SERVER_URL).
Every check prints `ok` or `FAIL`; the last line is `N passed, M failed`, and the exit
status is non-zero if anything failed.
"""

import asyncio
import os
import sys
import traceback
import uuid

import httpx
from langgraph_sdk import get_client

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HITL_SERVER_URL", "http://127.0.0.1:2024")
INPUT = {"messages": [{"role": "user", "content": "Please clean up the workspace as my notes say."}]}
HITL_NODE = "HumanInTheLoopMiddleware.after_model"
# Marks this run's threads, so searches ignore threads of earlier runs on the same database.
SUITE = str(uuid.uuid4())

passed = 0
failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def http_status(error):
    """The HTTP status of an error the SDK raised (its own error classes and the plain
    httpx error of `runs.wait` both carry the response)."""
    return error.response.status_code if isinstance(error, httpx.HTTPStatusError) else None


async def raises(status, awaitable):
    """The error `awaitable` raised, if it is an HTTP error with `status`; None if it
    succeeded. Any other error propagates."""
    try:
        await awaitable
    except httpx.HTTPStatusError as e:
        if http_status(e) == status:
            return e
        raise
    return None


def detail(error):
    return error.response.text if error is not None else ""


def decisions(*ds):
    return {"decisions": list(ds)}


APPROVE = {"type": "approve"}


def tool_messages(values):
    return [m for m in values["messages"] if m["type"] == "tool"]


def last_text(values):
    return values["messages"][-1]["content"]


async def to_interrupt(client):
    """A new thread run to its review; returns (thread_id, interrupt)."""
    thread = await client.threads.create(metadata={"suite": SUITE})
    result = await client.runs.wait(thread["thread_id"], "agent", input=INPUT)
    return thread["thread_id"], result["__interrupt__"][0]


async def stream_to_interrupt(client, ctx):
    thread = await client.threads.create(metadata={"suite": SUITE, "flow": "stream"})
    tid = thread["thread_id"]
    created = []
    events = []
    async for chunk in client.runs.stream(
        tid, "agent", input=INPUT, stream_mode=["values", "updates"],
        on_run_created=lambda meta: created.append(meta),
    ):
        events.append(chunk)
    check("stream: the first event is metadata", events[0].event == "metadata", events[0])
    check("stream: on_run_created got the run id", created and created[0]["run_id"] == events[0].data["run_id"], created)
    paused = [e for e in events if e.event == "values" and "__interrupt__" in e.data]
    check("stream: values carry __interrupt__ at the pause", len(paused) == 1, [e.event for e in events])
    interrupt = paused[0].data["__interrupt__"][0]
    names = [r["name"] for r in interrupt["value"]["action_requests"]]
    check("stream: the review lists delete_file and send_email", names == ["delete_file", "send_email"], names)
    check("stream: updates carry __interrupt__ too", any(e.event == "updates" and "__interrupt__" in e.data for e in events))
    run = await client.runs.get(tid, created[0]["run_id"])
    check("stream: a run paused at an interrupt is `success`", run["status"] == "success", run["status"])
    ctx["thread"], ctx["interrupt"] = tid, interrupt


async def thread_status_and_search(client, ctx):
    tid, interrupt = ctx["thread"], ctx["interrupt"]
    thread = await client.threads.get(tid)
    check("thread: status interrupted", thread["status"] == "interrupted", thread["status"])
    check("thread: metadata has graph_id and assistant_id",
          thread["metadata"].get("graph_id") == "agent" and thread["metadata"].get("assistant_id") == "fe096781-5601-53d2-b2f6-0d3403f7e9ca",
          thread["metadata"])
    by_task = list(thread["interrupts"].values())
    check("thread: interrupts keyed by task", len(by_task) == 1 and by_task[0][0]["id"] == interrupt["id"], thread["interrupts"])
    found = await client.threads.search(metadata={"graph_id": "agent", "suite": SUITE}, status="interrupted")
    check("search: finds the thread by metadata and status", [t["thread_id"] for t in found] == [tid], [t["thread_id"] for t in found])
    check("search: results carry interrupts", found and found[0]["interrupts"] == thread["interrupts"])
    idle = await client.threads.search(metadata={"suite": SUITE}, status="idle")
    check("search: not listed as idle", idle == [], idle)


async def state_with_tasks(client, ctx):
    tid, interrupt = ctx["thread"], ctx["interrupt"]
    state = await client.threads.get_state(tid)
    check("state: next is the review node", state["next"] == [HITL_NODE], state["next"])
    check("state: the task carries the interrupt", state["tasks"][0]["interrupts"][0]["id"] == interrupt["id"], state["tasks"])
    check("state: top-level interrupts", [i["id"] for i in state["interrupts"]] == [interrupt["id"]], state["interrupts"])


async def history(client, ctx):
    tid = ctx["thread"]
    states = await client.threads.get_history(tid)
    state = await client.threads.get_state(tid)
    check("history: newest first, the head first", states[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"])
    check("history: one state per superstep", len(states) >= 4, len(states))
    check("history: each state's parent is the next one",
          all(a["parent_checkpoint"]["checkpoint_id"] == b["checkpoint"]["checkpoint_id"] for a, b in zip(states, states[1:])))
    check("history: the oldest is the input", states[-1]["metadata"]["source"] == "input", states[-1]["metadata"])
    limited = await client.threads.get_history(tid, limit=2)
    check("history: limit", len(limited) == 2, len(limited))


async def approve(client, ctx):
    tid = ctx["thread"]
    last = None
    async for chunk in client.runs.stream(tid, "agent", command={"resume": decisions(APPROVE, APPROVE)}):
        if chunk.event == "values":
            last = chunk.data
    text = last_text(last)
    check("approve: both tools ran", "Deleted old-report.txt" in text and "Sent \"Cleanup\" to bob@example.com" in text, text)
    thread = await client.threads.get(tid)
    check("approve: the thread is idle", thread["status"] == "idle" and thread["interrupts"] == {}, thread["status"])
    err = await raises(409, client.runs.wait(tid, "agent", command={"resume": decisions(APPROVE, APPROVE)}))
    check("approve: resuming again is 409 (nothing pending)", "no pending interrupt" in detail(err), detail(err))


async def edit(client, ctx):
    tid, _ = await to_interrupt(client)
    edited = {"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "carol@example.com", "subject": "Cleanup", "body": "Done."}}}
    values = await client.runs.wait(tid, "agent", command={"resume": decisions(APPROVE, edited)})
    email = [m for m in tool_messages(values) if m.get("name") == "send_email"][0]
    check("edit: the reviewer's arguments ran", "carol@example.com" in email["content"], email["content"])
    calls = [c for m in values["messages"] if m["type"] == "ai" for c in m.get("tool_calls", []) if c["name"] == "send_email"]
    check("edit: the model's call is kept as proposed", calls and calls[0]["args"]["to"] == "bob@example.com", calls)


async def reject(client, ctx):
    tid, _ = await to_interrupt(client)
    values = await client.runs.wait(tid, "agent", command={"resume": decisions(
        {"type": "reject", "message": "Keep the report."}, {"type": "reject"})})
    tools = tool_messages(values)
    check("reject: no tool ran, both answered with errors", [m.get("status") for m in tools[-2:]] == ["error", "error"], tools)
    check("reject: the reviewer's reason reaches the model", "Keep the report." in tools[-2]["content"], tools[-2]["content"])


async def respond(client, ctx):
    tid, _ = await to_interrupt(client)
    values = await client.runs.wait(tid, "agent", command={"resume": decisions(
        APPROVE, {"type": "respond", "message": "I will tell Bob myself."})})
    email = [m for m in tool_messages(values) if m.get("name") == "send_email"][0]
    check("respond: the answer replaces the email", email["content"] == "I will tell Bob myself." and email.get("status", "success") == "success", email)


async def join(client, ctx):
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "agent", input=INPUT)
    check("join: runs.create gives a run", run["run_id"] and run["assistant_id"] == "fe096781-5601-53d2-b2f6-0d3403f7e9ca", run)
    result = await client.runs.join(tid, run["run_id"])
    check("join: returns the values with __interrupt__", "__interrupt__" in result and "messages" in result, list(result))
    got = await client.runs.get(tid, run["run_id"])
    check("join: the run ended as success", got["status"] == "success", got["status"])
    runs = await client.runs.list(tid)
    check("join: runs.list", [r["run_id"] for r in runs] == [run["run_id"]], runs)

    resumable = await client.runs.create(tid, "agent", command={"resume": decisions(APPROVE, APPROVE)},
                                         stream_mode=["values", "updates"], stream_resumable=True)
    await client.runs.join(tid, resumable["run_id"])
    replay = [c async for c in client.runs.join_stream(tid, resumable["run_id"], last_event_id="-1")]
    finals = [c.data for c in replay if c.event == "values"]
    check("join_stream: a resumable run replays from Last-Event-ID",
          replay and replay[0].event == "metadata" and finals and "Here is what happened" in last_text(finals[-1]),
          [c.event for c in replay])


async def cancel(client, ctx):
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={})
    busy = await client.threads.get(tid)
    check("cancel: the thread is busy", busy["status"] == "busy", busy["status"])
    err = await raises(409, client.runs.create(tid, "slow", input={}, multitask_strategy="reject"))
    check("cancel: reject while busy is 409", err is not None, err)
    await client.runs.cancel(tid, run["run_id"], wait=True)
    got = await client.runs.get(tid, run["run_id"])
    check("cancel: the run is `interrupted`", got["status"] == "interrupted", got["status"])
    thread = await client.threads.get(tid)
    check("cancel: the thread can be continued", thread["status"] == "interrupted" and thread["error"]["error"] == "UserInterrupt", thread)
    err = await raises(404, client.runs.cancel(tid, run["run_id"]))
    check("cancel: an ended run is 404", err is not None, err)

    run = await client.runs.create(tid, "slow", input=None)
    await client.runs.cancel(tid, run["run_id"], wait=True, action="rollback")
    err = await raises(404, client.runs.get(tid, run["run_id"]))
    check("cancel: rollback deletes the run", err is not None, err)


async def malformed_resume(client, ctx):
    tid, interrupt = await to_interrupt(client)
    runs_before = len(await client.runs.list(tid))
    err = await raises(422, client.runs.wait(tid, "agent", command={"resume": decisions(APPROVE)}))
    check("malformed: one decision for two requests is 422", "invalid answer" in detail(err), detail(err))
    err = await raises(422, client.runs.wait(tid, "agent", command={"resume": [{"type": "accept", "args": None}]}))
    check("malformed: a list resume is 422", err is not None, err)
    thread = await client.threads.get(tid)
    check("malformed: the thread is still interrupted", thread["status"] == "interrupted", thread["status"])
    state = await client.threads.get_state(tid)
    check("malformed: the same interrupt is pending", [i["id"] for i in state["interrupts"]] == [interrupt["id"]], state["interrupts"])
    check("malformed: no run was recorded", len(await client.runs.list(tid)) == runs_before)
    values = await client.runs.wait(tid, "agent", command={"resume": decisions(APPROVE, APPROVE)})
    check("malformed: a correct resume then works", "Here is what happened" in last_text(values), last_text(values))


async def concurrent_resumes(client, ctx):
    tid, _ = await to_interrupt(client)
    command = {"resume": decisions(APPROVE, APPROVE)}
    results = await asyncio.gather(
        client.runs.wait(tid, "agent", command=command),
        client.runs.wait(tid, "agent", command=command),
        return_exceptions=True,
    )
    conflicts = [r for r in results if http_status(r) == 409]
    done = [r for r in results if isinstance(r, dict)]
    check("concurrent: exactly one resume is 409", len(conflicts) == 1 and len(done) == 1, results)
    values = (await client.threads.get_state(tid))["values"]
    check("concurrent: each tool ran once", len(tool_messages(values)) == 3, len(tool_messages(values)))


async def errors(client, ctx):
    err = await raises(404, client.threads.get(str(uuid.uuid4())))
    check("errors: an unknown thread is 404", err is not None, err)
    err = await raises(404, client.runs.wait(str(uuid.uuid4()), "agent", input=INPUT))
    check("errors: a run on an unknown thread is 404", err is not None, err)
    assistants = await client.assistants.search()
    check("assistants: agent, approve, payments and slow", sorted(a["graph_id"] for a in assistants) == ["agent", "approve", "payments", "slow"], assistants)


async def agent_inbox(client, ctx):
    # Agent Inbox answers with its older HumanResponse list; hitl translates it per policy.
    tid, _ = await to_interrupt(client)
    inbox = [{"type": "response", "args": "Keep the report."},
             {"type": "edit", "args": {"action": "send_email", "args": {"to": "carol@example.com", "subject": "Cleanup", "body": "Done."}}}]
    values = await client.runs.wait(tid, "agent", command={"resume": inbox})
    by_tool = {m.get("name"): m["content"] for m in tool_messages(values)}
    check("agent inbox: a response rejects the deletion", "Keep the report." in by_tool.get("delete_file", ""), by_tool)
    check("agent inbox: an edit runs the reviewer's arguments", "carol@example.com" in by_tool.get("send_email", ""), by_tool)
    check("agent inbox: the thread is idle", (await client.threads.get(tid))["status"] == "idle", tid)


FLOWS = [stream_to_interrupt, thread_status_and_search, state_with_tasks, history, approve, edit, reject,
         respond, join, cancel, malformed_resume, concurrent_resumes, agent_inbox, errors]


async def main():
    global failed
    client = get_client(url=URL, api_key=os.environ.get("HITL_SERVER_TOKEN"))
    ctx = {}
    for flow in FLOWS:
        try:
            await flow(client, ctx)
        except Exception:  # a flow that crashes is a failed check, and the others still run
            failed += 1
            print(f"FAIL {flow.__name__} raised:")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
