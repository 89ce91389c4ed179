"""The quantizer's stage with real parts: a tiny llama and a real LoRA adapter, a real worker
process (peft merge, llama.cpp conversion and inference, xgrammar), real databases, the
artifact store and the kernel's consumer policy; and once the service as its own process on
the session's NATS.

The tiny random model answers nothing right, so the merged model scores 0 on the golden set:
retention is then not measured, every variant fails that gate, and the merged model is chosen
with the reason. That is the "no variant passes" path; the passing path is domain-tested."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from quantizer import domain
from quantizer.handlers import build_deps
from quantizer.models import QuantizationRow, VariantRow
from quantizer.service import _calibration_rows, stages
from quantizer.settings import QuantizerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.artifacts.base import object_key
from shared.bus import JetStreamPublisher, durable_name, make_broker, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, Event, event_class
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DeadLettered, EvaluationCompleted
from shared.events.quantization import VariantSelected
from shared.models import store_model_dir
from shared.relay import OutboxRelay
from shared.runtime.service import ServiceContext
from shared.runtime.stage import handler_for
from shared.settings import PlatformSettings
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from tests.integration.test_quantizer_recipe import GOLDEN, SCHEMA, make_adapter, needs_llama

pytestmark = needs_llama
SETTINGS = QuantizerSettings(always=["gguf"], max_new_tokens=24, threads=2, context=256)
CONSUMER = durable_name("quantizer", EvaluationCompleted)


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("qs-adapter") / "adapter")


@dataclass
class World:
    ctx: ServiceContext
    store: LocalArtifactStore
    spec: ArtifactRef
    base: ArtifactRef
    adapter: ArtifactRef
    report: ArtifactRef
    calls: list[str] = field(default_factory=list)


def make_world(
    tmp_path: Path,
    db: Database,
    base_dir: Path,
    adapter_dir: Path,
    thresholds: dict | None = None,
    quantization: list[str] | None = None,
) -> World:
    from shared.tasks.spec import TaskSpec

    store = LocalArtifactStore(tmp_path / "artifacts")
    base = store_model_dir(store, base_dir, "tiny-base")
    adapter = store_model_dir(store, adapter_dir, "a", kind="adapter", base_model=base.sha256)
    rows = [{"id": i, "input": t, "output": o, "use_case": "it"} for i, t, o in GOLDEN]
    spec = TaskSpec.model_validate(
        {
            "name": "triage",
            "instructions": "Route the ticket.",
            "output_schema": SCHEMA,
            "use_cases": [{"name": "it", "weight": 1}],
            "golden_set": store.put_bytes("".join(json.dumps(r) + "\n" for r in rows).encode()),
            "thresholds": thresholds or {"p95_latency_ms": 600000},
            "quantization": ["int8"] if quantization is None else quantization,
            "teacher": {"base_url": "http://127.0.0.1:1/v1", "model": "t"},
            "student": {"base_model": "tiny", "base_model_ref": base, "max_seq_len": 64},
            "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
        }
    )
    spec_ref = store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
    report = store.put_bytes(json.dumps({"base_model": base.model_dump(mode="json")}).encode())
    ctx = ServiceContext(
        name="quantizer",
        settings=PlatformSettings(home=tmp_path / "home", database_url=db.url),
        db=db,
        broker=make_broker("nats://127.0.0.1:1", client_name="unused"),
        policy=ConsumerPolicy(),
        artifacts=AsyncArtifactStore(store),
    )
    return World(ctx, store, spec_ref, base, adapter, report)


def evaluated(world: World, *, passed: bool = True) -> EvaluationCompleted:
    return EvaluationCompleted(
        cycle_id=uuid.uuid4(),
        producer="evaluator",
        evaluation_id=uuid.uuid4(),
        task_name="triage",
        task_version=1,
        task_spec=world.spec,
        candidate=world.adapter,
        candidate_kind="adapter",
        passed=passed,
        report=world.report,
    )


@dataclass
class FakeMessage:
    body: bytes
    subject: str
    delivery: int = 1
    stream_sequence: int = 1

    async def ack(self) -> None: ...
    async def nack(self, delay: float) -> None: ...
    async def reject(self) -> None: ...
    async def in_progress(self) -> None: ...


async def deliver(world: World, event: Event, delivery: int = 1) -> str:
    [stage] = stages(build_deps(world.ctx, SETTINGS))
    msg = FakeMessage(event.model_dump_json().encode(), event.subject, delivery)
    return await process(
        msg,
        type(event),
        handler_for(stage, service="quantizer", db=world.ctx.db),
        service="quantizer",
        consumer=CONSUMER,
        db=world.ctx.db,
        policy=world.ctx.policy,
    )


async def answers(db: Database, cause: Event) -> dict[str, list]:
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(OutboxRow.subject, OutboxRow.payload))).all()
    out: dict[str, list] = {}
    for subject, payload in rows:
        event = event_class(subject).model_validate_json(payload)
        if event.causation_id == cause.event_id:
            out.setdefault(subject, []).append(event)
    return out


async def count(db: Database, table) -> int:
    async with db.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(table))


async def test_passing_adapter_gets_variants_and_a_choice_once(
    db, tmp_path, tiny_model_dir, adapter_dir
):
    world = make_world(tmp_path, db, tiny_model_dir, adapter_dir)
    event = evaluated(world)
    assert await deliver(world, event) == "acked"
    out = await answers(db, event)
    [chosen] = out.pop(VariantSelected.subject)
    assert out == {}
    assert chosen.cycle_id == event.cycle_id and chosen.evaluation_id == event.evaluation_id
    names = {v.name: v for v in chosen.variants}
    assert list(names) == ["merged", "gguf-f16", "gguf-q8_0", "vllm-w8a16"]
    for name in ("merged", "gguf-f16", "gguf-q8_0"):
        v = names[name]
        assert v.status == "evaluated" and v.artifact is not None
        assert v.schema_validity == 1.0 and v.p95_ms and v.cost_per_query_usd
        assert world.store.exists(v.artifact)
    gguf = world.store.get_bytes(names["gguf-q8_0"].artifact)
    assert gguf[:4] == b"GGUF" and names["gguf-q8_0"].artifact.media_type == "application/vnd.gguf"
    assert names["vllm-w8a16"].status == "skipped" and names["vllm-w8a16"].artifact is None
    assert "needs a GPU" in names["vllm-w8a16"].reason
    # The random model scores 0: nothing to retain, so no variant passes; merged is chosen.
    assert chosen.chosen == "merged" and chosen.chosen_engine == "transformers"
    assert chosen.chosen_model == chosen.merged_model == names["merged"].artifact
    assert chosen.reason.startswith("no variant passed: ")
    assert "gguf-q8_0 failed retention not measured" in chosen.reason
    report = json.loads(world.store.get_bytes(chosen.report))
    assert report["merge_max_abs_diff"] <= SETTINGS.merge_tolerance
    # Which kernels the engines chose on this CPU is part of every figure.
    assert "AVX" in report["runtime"]["llama_cpp_system"]
    assert report["runtime"]["torch_cpu_capability"]
    assert await count(db, QuantizationRow) == 1 and await count(db, VariantRow) == 4

    outbox = await count(db, OutboxRow)
    assert await deliver(world, event, delivery=2) == "acked"
    assert await count(db, OutboxRow) == outbox, "a redelivery has no second effect"

    failed = evaluated(world, passed=False)
    assert await deliver(world, failed) == "acked"
    assert await answers(db, failed) == {}, "a failed candidate is not quantized"

    unquantized = make_world(tmp_path / "none", db, tiny_model_dir, adapter_dir, quantization=[])
    asked_for_none = evaluated(unquantized)
    assert await deliver(unquantized, asked_for_none) == "acked"
    assert await answers(db, asked_for_none) == {}, "quantization: [] ships the adapter itself"


async def test_when_no_form_serves_within_the_gates_the_cycle_ends_here_with_the_figures(
    db, tmp_path, tiny_model_dir, adapter_dir
):
    """A budget no engine can meet (a microsecond): every form is measured, none is chosen,
    and the cycle ends at quantization instead of shipping a model that is too slow."""
    world = make_world(tmp_path, db, tiny_model_dir, adapter_dir, {"p95_latency_ms": 0.001})
    event = evaluated(world)
    assert await deliver(world, event) == "acked"
    out = await answers(db, event)
    [ended] = out.pop(CycleFailed.subject)
    assert out == {}, "no variant.selected"
    assert ended.stage == "quantization" and ended.cycle_id == event.cycle_id
    assert ended.reason.startswith("no serving form passes the task's gates: merged failed ")
    assert "p95_latency_ms" in ended.reason and "gguf-q8_0 failed" in ended.reason
    assert ended.reason.endswith("more training data cannot fix latency or cost")
    async with db.uow() as uow:
        run = (await uow.session.execute(select(QuantizationRow))).scalar_one()
        assert run.status == "failed" and run.chosen is None and run.reason == ended.reason
        report_ref = ArtifactRef.model_validate(run.report)
    assert await count(db, VariantRow) == 4, "every form's figures are kept"
    report = json.loads(world.store.get_bytes(report_ref))
    assert report["chosen"] is None and report["serving_budget"]["p95_ms"] == 0.001


async def test_the_adapters_train_split_is_fetched_for_calibration_or_why_not_is_said(
    sqlite_db, tmp_path, tiny_model_dir, adapter_dir
):
    world = make_world(tmp_path, sqlite_db, tiny_model_dir, adapter_dir)
    deps = build_deps(world.ctx, SETTINGS)
    gpu_plan = domain.plan(["int4"])
    folder = tmp_path / "fetched"
    folder.mkdir()
    train = world.store.put_bytes(b'{"input": "q", "output": "{}"}\n')
    manifest = {"extra": {"train_split": train.model_dump(mode="json")}}
    path, why = await _calibration_rows(deps, gpu_plan, manifest, folder)
    assert why == "" and path.read_bytes() == b'{"input": "q", "output": "{}"}\n'

    assert await _calibration_rows(deps, gpu_plan, {}, folder) == (
        None,
        "the adapter's manifest names no train split",
    )
    gone = train.model_copy(update={"sha256": "0" * 64})
    path, why = await _calibration_rows(
        deps, gpu_plan, {"extra": {"train_split": gone.model_dump(mode="json")}}, folder
    )
    assert path is None and why.startswith("the train split could not be fetched")
    # CPU-only plans fetch nothing.
    assert (await _calibration_rows(deps, domain.plan(["gguf"]), manifest, folder))[0] is None


async def test_corrupt_adapter_ends_the_cycle(sqlite_db, tmp_path, tiny_model_dir, adapter_dir):
    world = make_world(tmp_path, sqlite_db, tiny_model_dir, adapter_dir)
    manifest = json.loads(world.store.get_bytes(world.adapter))
    weights = ArtifactRef.model_validate(manifest["files"]["adapter_model.safetensors"])
    path = world.store.root / object_key(weights.sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    event = evaluated(world)
    assert await deliver(world, event) == "dead_lettered_permanent"
    out = await answers(sqlite_db, event)
    [letter] = out.pop(DeadLettered.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}
    assert failed.stage == "quantization" and world.adapter.sha256[:12] in failed.reason
    assert letter.error_kind == "permanent"
    async with sqlite_db.uow() as uow:
        rows = (
            await uow.session.execute(select(QuantizationRow.status, QuantizationRow.reason))
        ).all()
    assert [tuple(r) for r in rows] == [("failed", failed.reason)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_service_process_answers_on_the_session_nats(
    nats_server, db, tmp_path, tiny_model_dir, adapter_dir
):
    world = make_world(tmp_path, db, tiny_model_dir, adapter_dir)
    proc = serve(
        "quantizer.main:create_app",
        nats_server.url,
        db.url,
        DISTILLERY_HOME=str(tmp_path / "home"),
        DISTILLERY_ARTIFACT_ROOT=str(world.store.root),
        QUANTIZER_ALWAYS='["gguf"]',
        QUANTIZER_MAX_NEW_TOKENS="24",
        QUANTIZER_CONTEXT="256",
    )
    event = evaluated(world)
    try:
        async with db.uow() as uow:
            await uow.publish(event)
            await uow.commit()
        async with make_broker(nats_server.url, client_name="test") as broker:
            await broker.connect()
            await OutboxRelay(db, JetStreamPublisher(broker), producer="evaluator").drain()
        deadline = asyncio.get_running_loop().time() + 300
        while not await stream_messages(nats_server.url, VariantSelected.subject):
            assert proc.poll() is None, f"the service exited with {proc.returncode}"
            assert asyncio.get_running_loop().time() < deadline, "no variant.selected in time"
            await asyncio.sleep(1)
    finally:
        stop(proc)
    [message] = await stream_messages(nats_server.url, VariantSelected.subject)
    chosen = VariantSelected.model_validate_json(message.data)
    assert chosen.causation_id == event.event_id and chosen.producer == "quantizer"
    assert chosen.chosen == "merged"
