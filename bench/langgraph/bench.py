"""LangGraph's side of the benchmark: the scenarios of bench/SCENARIOS.md.

Each run prints exactly one JSON object on stdout; logs go to stderr.

    python bench.py cycle   --backend memory|sqlite|postgres [--n 1000]
    python bench.py long    --backend memory|sqlite|postgres [--cycles 200]
    python bench.py paused  [--threads 10000]
    python bench.py workers [--threads 2000] [--workers 1|2]

The agent is LangChain v1's `create_agent` with `HumanInTheLoopMiddleware` (batched
mode), two `@tool` tools and a scripted chat model whose answer is a pure function
of the message list.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from psycopg.rows import dict_row

USER = "Send the quarterly numbers to Alice."
FINAL = "Done: the email is sent and the data is read."
EMAIL_ARGS = {"to": "alice@example.com", "body": "The quarterly numbers are ready."}
DATA_ARGS = {"query": "quarterly numbers"}
APPROVE = {"decisions": [{"type": "approve"}]}
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --- The agent ---------------------------------------------------------------------


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"sent to {to}"


@tool
def read_data(query: str) -> str:
    """Read data."""
    return f"data for {query}"


class ScriptedChatModel(BaseChatModel):
    """A chat model whose answer is a pure function of the message list.

    After a user message it proposes `send_email` and `read_data` in one assistant
    message; after a tool result it answers with the final text.
    """

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if isinstance(messages[-1], HumanMessage):
            answer = AIMessage(
                content="",
                tool_calls=[
                    {"name": "send_email", "args": EMAIL_ARGS, "id": "call_email", "type": "tool_call"},
                    {"name": "read_data", "args": DATA_ARGS, "id": "call_data", "type": "tool_call"},
                ],
            )
        else:
            answer = AIMessage(content=FINAL)
        return ChatResult(generations=[ChatGeneration(message=answer)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        # No I/O: answer on the event loop, as an async client would, rather than
        # in the default executor thread.
        return self._generate(messages, stop)


def build_agent(checkpointer: BaseCheckpointSaver) -> Any:
    return create_agent(
        ScriptedChatModel(),
        tools=[send_email, read_data],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"send_email": True})],
        checkpointer=checkpointer,
    )


def thread(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def user_input() -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": USER}]}


def check_interrupted(out: dict[str, Any]) -> None:
    """The run paused on one review of `send_email`, and no tool has run."""
    interrupts = out.get("__interrupt__", ())
    assert len(interrupts) == 1, f"expected one interrupt, got {interrupts!r}"
    requests = interrupts[0].value["action_requests"]
    assert [r["name"] for r in requests] == ["send_email"], requests
    assert isinstance(out["messages"][-1], AIMessage), "no tool runs before the review"


def check_done(out: dict[str, Any]) -> None:
    """Both tools ran after the approval and the model gave its final answer."""
    assert "__interrupt__" not in out, out.get("__interrupt__")
    *_, email, data, final = out["messages"]
    assert isinstance(email, ToolMessage) and email.content == "sent to alice@example.com", email
    assert isinstance(data, ToolMessage) and data.content == "data for quarterly numbers", data
    assert isinstance(final, AIMessage) and final.content == FINAL, final


def run_one_cycle(agent: Any, thread_id: str) -> tuple[float, float]:
    """One HITL cycle; returns (time to the interrupt, time of the resume) in ms."""
    config = thread(thread_id)
    t0 = time.perf_counter()
    out = agent.invoke(user_input(), config)
    t1 = time.perf_counter()
    check_interrupted(out)
    t2 = time.perf_counter()
    out = agent.invoke(Command(resume=APPROVE), config)
    t3 = time.perf_counter()
    check_done(out)
    return ms(t1 - t0), ms(t3 - t2)


def warm_up(agent: Any, store: Store) -> None:
    """One cycle on a throwaway thread (one per process: workers share a schema), so
    that lazy imports and caches are not timed."""
    thread_id = f"warmup-{os.getpid()}"
    run_one_cycle(agent, thread_id)
    store.saver.delete_thread(thread_id)


# --- Storage and its measurement ---------------------------------------------------


class Store:
    """A checkpointer, and how to measure what it keeps."""

    backend: str
    saver: BaseCheckpointSaver

    def stored_bytes(self, thread_id: str | None = None) -> int:
        """Bytes of checkpoints, channel values and pending writes (`None`: every thread)."""
        raise NotImplementedError


class MemoryStore(Store):
    backend = "memory"

    def __init__(self) -> None:
        self.saver = InMemorySaver()

    def stored_bytes(self, thread_id: str | None = None) -> int:
        saver = self.saver

        def ours(t: str) -> bool:
            return thread_id is None or t == thread_id

        total = 0
        for t, namespaces in saver.storage.items():
            if ours(t):
                for checkpoints in namespaces.values():
                    for (_, checkpoint), (_, metadata), _parent in checkpoints.values():
                        total += len(checkpoint) + len(metadata)
        for (t, *_), (_, blob) in saver.blobs.items():
            if ours(t):
                total += len(blob)
        for (t, *_), writes in saver.writes.items():
            if ours(t):
                total += sum(len(value) for _task, _channel, (_, value), _path in writes.values())
        return total


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()

    def stored_bytes(self, thread_id: str | None = None) -> int:
        where, params = ("", ()) if thread_id is None else (" WHERE thread_id = ?", (thread_id,))
        query = f"""
            SELECT (SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0)
                      FROM checkpoints{where})
                 + (SELECT coalesce(sum(length(value)), 0) FROM writes{where})
        """
        with closing(sqlite3.connect(self.path)) as reader:
            return reader.execute(query, params * 2).fetchone()[0]

    def close(self) -> None:
        self.conn.close()


class PostgresStore(Store):
    """A `PostgresSaver` on one connection (as `PostgresSaver.from_conn_string` makes
    it), in a schema of its own."""

    backend = "postgres"

    def __init__(self, url: str, schema: str, *, setup: bool) -> None:
        self.conn = psycopg.Connection.connect(
            url,
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
            options=f"-c search_path={schema}",
        )
        self.saver = PostgresSaver(self.conn)
        if setup:
            self.saver.setup()

    def stored_bytes(self, thread_id: str | None = None) -> int:
        where, params = ("", ()) if thread_id is None else (" WHERE thread_id = %s", (thread_id,))
        query = f"""
            SELECT ((SELECT coalesce(sum(octet_length(checkpoint::text)
                                         + octet_length(metadata::text)), 0)
                       FROM checkpoints{where})
                  + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs{where})
                  + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes{where})
                   )::bigint AS total
        """
        return self.conn.execute(query, params * 3).fetchone()["total"]

    def close(self) -> None:
        self.conn.close()


@contextmanager
def pg_schema(url: str, schema: str) -> Iterator[str]:
    """A fresh schema, dropped with everything in it at the end."""
    with psycopg.Connection.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.Connection.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def open_store(args: argparse.Namespace) -> Iterator[Store]:
    """The store of `--backend`, fresh for this run and removed afterwards."""
    if args.backend == "memory":
        yield MemoryStore()
    elif args.backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="langgraph-bench-") as tmp:
            path = Path(args.sqlite_path or Path(tmp) / "bench.db")
            for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                stale.unlink(missing_ok=True)
            store = SqliteStore(path)
            try:
                yield store
            finally:
                store.close()
    else:
        with pg_schema(args.pg_url, f"langgraph_bench_{os.getpid()}") as schema:
            store = PostgresStore(args.pg_url, schema, setup=True)
            try:
                yield store
            finally:
                store.close()


# --- Measurement helpers -----------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: Sequence[float], p: float) -> float:
    """The value at rank round((n - 1) * p), as the Rust side computes it."""
    ordered = sorted(values)
    return ordered[math.floor((len(ordered) - 1) * p + 0.5)]


def rss() -> tuple[int, int]:
    """Resident memory (VmRSS) and its peak (VmHWM), in bytes, after a full GC."""
    gc.collect()
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


# --- Scenarios ---------------------------------------------------------------------


def run_cycle(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    with open_store(args) as store:
        agent = build_agent(store.saver)
        warm_up(agent, store)
        rss_before, _ = rss()
        interrupts, resumes = [], []
        start = time.perf_counter()
        for i in range(n):
            a, b = run_one_cycle(agent, f"t{i}")
            interrupts.append(a)
            resumes.append(b)
        elapsed = time.perf_counter() - start
        rss_after, peak = rss()
        checkpoints = len(list(store.saver.list(thread("t0"))))
        stored = store.stored_bytes()
    cycles = [a + b for a, b in zip(interrupts, resumes)]
    return {
        "n": n,
        "cycles_per_s": n / elapsed,
        "cycle_ms": {"median": percentile(cycles, 0.5), "p99": percentile(cycles, 0.99)},
        "interrupt_ms": {"median": percentile(interrupts, 0.5)},
        "resume_ms": {"median": percentile(resumes, 0.5)},
        "checkpoints_per_thread": checkpoints,
        "stored_bytes_per_thread": stored / n,
        "rss_per_thread_bytes": max(rss_after - rss_before, 0) / n,
        "peak_rss_bytes": peak,
    }


def run_long(args: argparse.Namespace) -> dict[str, Any]:
    per_cycle, added = [], []
    with open_store(args) as store:
        agent = build_agent(store.saver)
        warm_up(agent, store)
        # Two threads: one timed, one measured after every cycle (measuring reads the
        # stored data, which would disturb the timing of the next cycle).
        for i in range(args.cycles):
            a, b = run_one_cycle(agent, "long")
            per_cycle.append(a + b)
            if (i + 1) % 50 == 0:
                log(f"long: {i + 1} timed cycles")
        before = 0
        for i in range(args.cycles):
            run_one_cycle(agent, "long-bytes")
            now = store.stored_bytes("long-bytes")
            added.append(now - before)
            before = now
            if (i + 1) % 50 == 0:
                log(f"long: {i + 1} measured cycles, {before} bytes")
    return {"cycles": args.cycles, "per_cycle_ms": per_cycle, "bytes_added": added, "total_bytes": before}


async def paused(threads: int) -> dict[str, Any]:
    store = MemoryStore()
    agent = build_agent(store.saver)
    warm_up(agent, store)
    rss_before, _ = rss()
    for i in range(threads):
        check_interrupted(await agent.ainvoke(user_input(), thread(f"p{i}")))
    rss_paused, _ = rss()

    async def resume(thread_id: str) -> float:
        t = time.perf_counter()
        out = await agent.ainvoke(Command(resume=APPROVE), thread(thread_id))
        latency = ms(time.perf_counter() - t)
        check_done(out)
        return latency

    start = time.perf_counter()
    latencies = await asyncio.gather(*(resume(f"p{i}") for i in range(threads)))
    elapsed = time.perf_counter() - start
    return {
        "threads": threads,
        "rss_per_paused_thread_bytes": max(rss_paused - rss_before, 0) / threads,
        "resume_per_s": threads / elapsed,
        "resume_ms": {"median": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)},
    }


def run_paused(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(paused(args.threads))


def run_workers(args: argparse.Namespace) -> dict[str, Any]:
    """Pause `threads` threads, then resume them with `workers` processes.

    Each worker connects, builds its agent and warms up, then says it is ready; the
    clock starts when all are ready and stops when the last one has finished.
    """
    threads, workers = args.threads, args.workers
    with pg_schema(args.pg_url, f"langgraph_bench_w_{os.getpid()}") as schema:
        store = PostgresStore(args.pg_url, schema, setup=True)
        try:
            agent = build_agent(store.saver)
            for i in range(threads):
                check_interrupted(agent.invoke(user_input(), thread(f"w{i}")))
        finally:
            store.close()
        children = []
        for w in range(workers):
            first, end = threads * w // workers, threads * (w + 1) // workers
            cmd = [sys.executable, __file__, "worker-child", "--backend", "postgres",
                   "--pg-url", args.pg_url, "--schema", schema, "--from", str(first), "--to", str(end)]
            children.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        try:
            for child in children:
                assert child.stdout.readline().strip() == "ready", "a worker failed to start"
            start = time.perf_counter()
            for child in children:
                child.stdin.write("go\n")
                child.stdin.close()
            codes = [child.wait() for child in children]
            elapsed = time.perf_counter() - start
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        assert codes == [0] * workers, f"a worker failed: exit codes {codes}"
    return {"threads": threads, "workers": workers, "resume_per_s": threads / elapsed}


def worker_child(args: argparse.Namespace) -> None:
    """One worker of `workers`: resume threads w{from}..w{to-1} once told to go."""
    store = PostgresStore(args.pg_url, args.schema, setup=False)
    try:
        agent = build_agent(store.saver)
        warm_up(agent, store)
        print("ready", flush=True)
        assert sys.stdin.readline().strip() == "go"
        for i in range(args.first, args.end):
            check_done(agent.invoke(Command(resume=APPROVE), thread(f"w{i}")))
    finally:
        store.close()


SCENARIOS = {"cycle": run_cycle, "long": run_long, "paused": run_paused, "workers": run_workers}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LangGraph's side of the benchmark (bench/SCENARIOS.md).")
    parser.add_argument("scenario", choices=[*SCENARIOS, "worker-child"],
                        help="the scenario (worker-child is internal to `workers`)")
    parser.add_argument("--backend", choices=["memory", "sqlite", "postgres"],
                        help="cycle, long: any (default memory); paused: memory; workers: postgres")
    parser.add_argument("--n", type=int, default=1000, help="cycle: fresh threads, one cycle each")
    parser.add_argument("--cycles", type=int, default=200, help="long: cycles on one thread")
    parser.add_argument("--threads", type=int, default=None,
                        help="paused: threads (default 10000); workers: threads (default 2000)")
    parser.add_argument("--workers", type=int, default=1, help="workers: resuming processes")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--sqlite-path", default=None, help="SQLite file (a temporary one by default)")
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--from", dest="first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--to", dest="end", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 10_000 if args.scenario == "paused" else 2_000
    required = {"paused": "memory", "workers": "postgres", "worker-child": "postgres"}.get(args.scenario)
    if required and args.backend not in (None, required):
        parser.error(f"{args.scenario} runs on the {required} backend only")
    args.backend = args.backend or required or "memory"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scenario == "worker-child":
        worker_child(args)
        return
    log(f"langgraph bench: {args.scenario} --backend {args.backend}")
    result = SCENARIOS[args.scenario](args)
    print(json.dumps({"system": "langgraph", "scenario": args.scenario, "backend": args.backend, **result}))


if __name__ == "__main__":
    main()
