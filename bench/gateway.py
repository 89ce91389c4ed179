"""Latency the deployer's gateway adds, against calling the same upstream directly.

One run, three processes: a fast local OpenAI-compatible upstream (fixed reply, no model), the
gateway in front of it (uvicorn, the service's own app: auth, limits, prompt rendering, trace
buffer; traces go to a publisher that discards them, so the bus is not measured), and this
load generator. Open loop at a fixed rate (--rps): request i is sent at t0 + i/rps whatever
the earlier ones do, so a slow path cannot slow its own arrivals. Direct and gateway phases
alternate (--rounds), so both see the same machine load; the figure is the added latency
(gateway minus direct) at P50 and P99, next to the direct baseline.

Not measured here: LiteLLM's proxy (issue 13 asks for it side by side; `litellm[proxy]` is not
installed in this environment), and the P99 goal (<= 2 ms added) on a 2-core machine shared
with other work, where the load generator competes with both servers.

    .venv/bin/python bench/gateway.py [--rps 200] [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
REPLY = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def upstream_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        await request.body()
        return JSONResponse(REPLY)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def gateway_app():
    from deployer.assemble import gateway_deps
    from deployer.domain import Backend, Route
    from deployer.gateway import RoutingTable, create_gateway
    from deployer.keys import ApiKey, KeyRing, digest
    from deployer.settings import DeployerSettings
    from shared.tasks import parse_spec
    from tests.fixtures.teacher_server import toy_spec

    class Discard:
        async def publish_event(self, event) -> None:
            return None

    upstream = os.environ["BENCH_UPSTREAM"]
    spec = parse_spec(toy_spec(upstream))
    key = ApiKey("bench", digest(os.environ["BENCH_KEY"]), frozenset({"toy-triage"}))
    route = Route("toy-triage", spec, Backend("student", upstream, "m", "v"))
    settings = DeployerSettings(requests_per_minute=10_000_000)
    deps = gateway_deps(settings, KeyRing([key]), RoutingTable({"toy-triage": route}), Discard())
    return create_gateway(deps)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", f"bench.gateway:{factory}", "--factory"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})


async def wait_up(url: str) -> None:
    async with httpx2.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx2.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def phase(url: str, headers: dict[str, str], rps: int, seconds: float) -> list[float]:
    body = {"model": "toy-triage", "messages": [{"role": "user", "content": "hello"}]}
    latencies: list[float] = []
    limits = httpx2.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            start = time.perf_counter()
            response = await client.post(url, json=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
            latencies.append((time.perf_counter() - start) * 1000)

        await one()  # warm the connection pool and the server
        latencies.clear()
        t0, tasks = time.perf_counter(), []
        for i in range(int(rps * seconds)):
            await asyncio.sleep(max(0.0, t0 + i / rps - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


async def main(args: argparse.Namespace) -> None:
    up_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    secret = "dk-bench-" + os.urandom(16).hex()
    procs = [serve("upstream_app", up_port, {})]
    procs.append(serve("gateway_app", gw_port, {"BENCH_UPSTREAM": upstream, "BENCH_KEY": secret}))
    try:
        await wait_up(f"http://127.0.0.1:{up_port}/")
        await wait_up(f"http://127.0.0.1:{gw_port}/health")
        direct: list[float] = []
        gateway: list[float] = []
        for _ in range(args.rounds):
            direct += await phase(f"{upstream}/chat/completions", {}, args.rps, args.seconds)
            gateway += await phase(
                f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                {"Authorization": f"Bearer {secret}"},
                args.rps,
                args.seconds,
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    print(f"{args.rps} rps open loop, {args.rounds} x {args.seconds} s per path, alternating")
    print(f"{'path':<10}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in (("direct", direct), ("gateway", gateway)):
        print(f"{name:<10}{len(values):>7}{pct(values, 50):>10.2f}{pct(values, 99):>10.2f}")
    for q in (50, 99):
        g, d = pct(gateway, q), pct(direct, q)
        print(f"added P{q}: {g - d:.2f} ms (gateway / direct = {g / d:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
