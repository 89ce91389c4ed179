"""Latency the deployer's gateway adds, against calling the same upstream directly.

One run, three processes: a fast local OpenAI-compatible upstream (fixed reply, no model), the
gateway in front of it (uvicorn, the service's own app: auth, limits, prompt rendering, trace
buffer; traces go to a publisher that discards them, so the bus is not measured), and this
load generator. Open loop at a fixed rate (--rps): request i is sent at t0 + i/rps whatever
the earlier ones do, so a slow path cannot slow its own arrivals. Direct and gateway phases
alternate (--rounds), so both see the same machine load; the figure is the added latency
(gateway minus direct) at P50 and P99, next to the direct baseline.

LiteLLM's proxy joins the rotation with `--litellm BIN` (its `litellm` command): it is not a
dependency of this project (it pulls in a few hundred MB), so it lives in a virtualenv of its
own, e.g. `python -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install "litellm[proxy]"`. It
runs one uvicorn worker (as the gateway does) with a config naming the same upstream and a
master key as its only key (it refuses to start without one; no database, so the key check is
a comparison, lighter than the gateway's hashed key lookup).
Without `--litellm` the comparison is printed as not measured.

    .venv/bin/python bench/gateway.py [--rps 200] [--seconds 5] [--rounds 2] [--litellm BIN]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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


def litellm(binary: str, port: int, upstream: str, workdir: Path, key: str) -> subprocess.Popen:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: toy-triage\n"
        "    litellm_params:\n"
        "      model: openai/m\n"
        f"      api_base: {upstream}\n"
        "      api_key: none\n"
    )
    command = [binary, "--config", str(config), "--port", str(port), "--num_workers", "1"]
    # Its own telemetry and request logging off: the comparison is the proxy path.
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    env["LITELLM_MASTER_KEY"] = key
    log = (workdir / "litellm.log").open("wb")
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def serve(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", f"bench.gateway:{factory}", "--factory"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})


async def wait_up(url: str, timeout_s: float = 20.0) -> None:
    async with httpx2.AsyncClient() as client:
        for _ in range(int(timeout_s * 10)):
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
    up_port, gw_port, ll_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    secret = "dk-bench-" + os.urandom(16).hex()
    procs = [serve("upstream_app", up_port, {})]
    procs.append(serve("gateway_app", gw_port, {"BENCH_UPSTREAM": upstream, "BENCH_KEY": secret}))
    workdir = Path(tempfile.mkdtemp(prefix="distillery-gwbench-"))
    paths = {
        "direct": (f"{upstream}/chat/completions", {}),
        "gateway": (
            f"http://127.0.0.1:{gw_port}/v1/chat/completions",
            {"Authorization": f"Bearer {secret}"},
        ),
    }
    try:
        if args.litellm:
            master = "sk-" + os.urandom(16).hex()
            procs.append(litellm(args.litellm, ll_port, upstream, workdir, master))
            paths["litellm"] = (
                f"http://127.0.0.1:{ll_port}/v1/chat/completions",
                {"Authorization": f"Bearer {master}"},
            )
        await wait_up(f"http://127.0.0.1:{up_port}/")
        await wait_up(f"http://127.0.0.1:{gw_port}/health")
        if args.litellm:
            try:
                await wait_up(f"http://127.0.0.1:{ll_port}/health/liveliness", timeout_s=120)
            except RuntimeError:
                log = (workdir / "litellm.log").read_text(errors="replace")
                raise RuntimeError(f"LiteLLM did not start:\n{log[-3000:]}") from None
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, (url, headers) in paths.items():
                latencies[name] += await phase(url, headers, args.rps, args.seconds)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.rps} rps open loop, {args.rounds} x {args.seconds} s per path, alternating")
    print(f"{'path':<10}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in latencies.items():
        print(f"{name:<10}{len(values):>7}{pct(values, 50):>10.2f}{pct(values, 99):>10.2f}")
    direct = latencies["direct"]
    added = {
        name: {q: pct(values, q) - pct(direct, q) for q in (50, 99)}
        for name, values in latencies.items()
        if name != "direct"
    }
    for name, by_q in added.items():
        for q, value in by_q.items():
            print(f"{name} added P{q}: {value:.2f} ms")
    print(f"goal gateway P99 added <= 2 ms: {_met(0 <= added['gateway'][99] <= 2)}")
    if "litellm" not in added:
        print("goal LiteLLM's added >= 5 x the gateway's: not measured (no --litellm), NOT met")
        return
    ratios = {}
    for q in (50, 99):
        ours, theirs = added["gateway"][q], added["litellm"][q]
        # An added latency at or below zero is inside the noise: no ratio is claimed from it.
        ratios[q] = theirs / ours if ours > 0 else None
        shown = f"{ratios[q]:.1f}x" if ratios[q] else "not measurable (gateway added <= 0)"
        print(f"LiteLLM added / gateway added at P{q}: {shown}")
    met = all(r is not None and r >= 5 for r in ratios.values())
    print(f"goal LiteLLM's added latency >= 5 x the gateway's at P50 and P99: {_met(met)}")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rps", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--litellm", help="LiteLLM's `litellm` command, to measure it too")
    asyncio.run(main(parser.parse_args()))
