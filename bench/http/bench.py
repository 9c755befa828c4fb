"""One HITL cycle over HTTP, driven by the official Python SDK: create a thread, run
to the interrupt (`runs.wait`), resume with an approval (`runs.wait` with a command).

Prints one JSON line: the latency of a cycle at concurrency 1 (median and p95 of
--latency-cycles cycles) and the cycles per second at each --concurrency level
(--cycles cycles per level, at most that many in flight).

    python bench.py --url http://127.0.0.1:2024 --system hitl-server
"""

import argparse
import asyncio
import json
import statistics
import time

from langgraph_sdk import get_client


async def cycle(client, assistant: str) -> None:
    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], assistant, input={"item": "invoice-7"})
    assert "__interrupt__" in out, out
    out = await client.runs.wait(
        thread["thread_id"], assistant, command={"resume": {"approved": True}}
    )
    assert out.get("approved") is True, out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--system", required=True)
    p.add_argument("--assistant", default="approve")
    p.add_argument("--latency-cycles", type=int, default=50)
    p.add_argument("--concurrency", type=int, nargs="+", default=[20, 100])
    p.add_argument("--cycles", type=int, default=200)
    a = p.parse_args()
    client = get_client(url=a.url)
    for _ in range(5):  # warm up
        await cycle(client, a.assistant)
    latencies = []
    for _ in range(a.latency_cycles):
        t = time.perf_counter()
        await cycle(client, a.assistant)
        latencies.append((time.perf_counter() - t) * 1000)
    throughput = {}
    for c in a.concurrency:
        gate = asyncio.Semaphore(c)

        async def one() -> None:
            async with gate:
                await cycle(client, a.assistant)

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(a.cycles)))
        throughput[str(c)] = a.cycles / (time.perf_counter() - t)
    latencies.sort()
    print(
        json.dumps(
            {
                "system": a.system,
                "latency_ms_median": statistics.median(latencies),
                "latency_ms_p95": latencies[int(len(latencies) * 0.95) - 1],
                "cycles_per_s": throughput,
            }
        ),
        flush=True,
    )


asyncio.run(main())
