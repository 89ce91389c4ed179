"""The evaluator end to end with real parts: a tiny llama with real LoRA adapters (peft), a
real worker process, the scripted teacher over real HTTP, real databases and artifact store,
the kernel's real consumer policy, and once the service as its own process on real NATS.

How a passing candidate exists by construction, honestly:
- The golden set has two use cases and a negative. Every "it" example has the same answer,
  so an adapter can learn it without reading the input: `passing_adapter` is trained on those
  inputs until its greedy output reproduces the answer exactly (checked, not assumed). It is
  right on "it" and wrong on "billing" and on the negative.
- The scripted teacher is right on "it" and deliberately wrong on "billing" and the negative.
  Teacher and candidate therefore both score 2/5, the quality gate (0.85 x teacher) passes,
  and no slice trails the teacher. The spec sets `min_teacher_quality` to 0.4 so that this
  teacher is good enough; `weak_teacher` (wrong everywhere, 0/5) is not.
- Every gate is measured, since an unmeasured one fails: the spec has a probe set and general
  text for general_regression (the general-text cross-entropy is measured even where the
  random base scores 0 on the probes), and latency samples give P95 latency.
- `untrained_adapter` (LoRA B = 0, so it behaves as the random base) scores 0: it fails the
  quality gate, and the failing slice is exactly "it", the one slice where the teacher is
  right; "billing" and "negative" are not failing because the teacher scores 0 there too.
- The tiny fixture model ties its embeddings and has pad = eos, so the eos row of its
  embedding is initialised to zero and it can never learn to stop. `base_dir` is that model
  with the eos row re-drawn; otherwise identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evaluator import ml
from evaluator.handlers import build_deps
from evaluator.models import EvaluationRow, ResultRow
from evaluator.service import Deps, stages
from evaluator.settings import EvaluatorSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.artifacts.base import object_key
from shared.bus import JetStreamPublisher, durable_name, make_broker, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy, Event, event_class
from shared.events.base import ArtifactRef
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    DeadLettered,
    EvaluationCompleted,
    QuantizationCompleted,
    TrainingCompleted,
)
from shared.models import store_model_dir
from shared.relay import OutboxRelay
from shared.runtime.service import ServiceContext
from shared.runtime.stage import handler_for
from shared.settings import PlatformSettings
from tests.fixtures.eval_teacher import ScriptedTeacher, scripted_teacher
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages

INSTRUCTIONS = "Route the support ticket. Reply with JSON only."
IT_ANSWER = '{"team": "it", "priority": "low"}'
GOLDEN = [
    {"id": "g1", "input": "My printer is jammed again", "output": IT_ANSWER, "use_case": "it"},
    {"id": "g2", "input": "The VPN will not connect", "output": IT_ANSWER, "use_case": "it"},
    {
        "id": "g3",
        "input": "I was charged twice this month",
        "output": '{"team": "billing", "priority": "low"}',
        "use_case": "billing",
    },
    {
        "id": "g4",
        "input": "Please resend my last invoice",
        "output": '{"team": "billing", "priority": "low"}',
        "use_case": "billing",
    },
    {
        "id": "g5",
        "input": "What will the weather be tomorrow?",
        "output": '{"team": "none", "priority": "escalate"}',
        "use_case": "billing",
        "negative": True,
    },
]
for _row in GOLDEN:
    _row.setdefault("negative", False)
PROBES = [
    {"id": "p1", "kind": "fact", "prompt": "What is the capital of France?", "answer": "Paris"},
    {"id": "p2", "kind": "math", "prompt": "What is 2 + 2?", "answer": "4"},
]
GENERAL_TEXT = "Water boils at one hundred degrees. " * 8
TEACHER_ACCURACY = {"billing": 0.0, "negative": 0.0}
WRONG_EVERYWHERE = {"it": 0.0, "billing": 0.0, "negative": 0.0}
SCHEMA = {
    "type": "object",
    "properties": {"team": {"type": "string"}, "priority": {"enum": ["low", "escalate"]}},
    "required": ["team", "priority"],
}
SETTINGS = EvaluatorSettings(
    batch_size=8, max_new_tokens=20, latency_samples=2, perplexity_max_tokens=128
)
TRAIN = durable_name("evaluator", TrainingCompleted)
QUANT = durable_name("evaluator", QuantizationCompleted)


# -- models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(tiny_model_dir: Path, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        row = model.get_input_embeddings().weight[tokenizer.eos_token_id]
        row.copy_(torch.randn(row.shape, generator=generator) * 0.02)
    dest = tmp_path_factory.mktemp("eval-base") / "model"
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


def _lora(model):
    from peft import LoraConfig, get_peft_model

    # The norms are trained too (modules_to_save): the random model's logits are too flat
    # for LoRA alone to make one answer the clear greedy choice.
    config = LoraConfig(
        r=16, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0, modules_to_save=["norm"]
    )
    return get_peft_model(model, config)


def train_memorising_adapter(base: Path, dest: Path, inputs: list[str], answer: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokenizer.padding_side = "left"
    model = _lora(AutoModelForCausalLM.from_pretrained(str(base)))
    prompts = ml.chat_prompts(tokenizer, INSTRUCTIONS, inputs)
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] + target for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    labels = torch.tensor([target] * len(encoded))
    params = [p for p in model.parameters() if p.requires_grad]
    norms = [p for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    rest = [p for p in params if all(p is not q for q in norms)]
    optimizer = torch.optim.Adam([{"params": norms, "lr": 0.1}, {"params": rest, "lr": 1e-2}])
    for step in range(1, 401):
        # Only the answer's logits are computed: the vocabulary projection dominates the cost.
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=len(target) + 1).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            model.eval()
            replies = ml.generate_batched(
                model, tokenizer, prompts, batch_size=8, max_new_tokens=20
            )
            model.train()
            if all(r.text == answer for r in replies):
                model.save_pretrained(dest)
                return dest
    raise AssertionError(f"the adapter did not memorise the answer; last loss {loss.item():.3f}")


@pytest.fixture(scope="module")
def passing_adapter_dir(base_dir: Path, request) -> Path:
    """Trained once per base model and recipe; kept in pytest's cache across runs."""
    recipe = hashlib.sha256((base_dir / "model.safetensors").read_bytes())
    recipe.update(json.dumps([INSTRUCTIONS, IT_ANSWER, "v1"]).encode())
    dest = Path(request.config.cache.mkdir("distillery-eval-adapters")) / recipe.hexdigest()[:16]
    if not (dest / "adapter_model.safetensors").exists():
        shutil.rmtree(dest, ignore_errors=True)
        inputs = [r["input"] for r in GOLDEN if r["use_case"] == "it"]
        train_memorising_adapter(base_dir, dest, inputs, IT_ANSWER)
    return dest


@pytest.fixture(scope="module")
def untrained_adapter_dir(base_dir: Path, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dest = tmp_path_factory.mktemp("eval-untrained") / "adapter"
    _lora(AutoModelForCausalLM.from_pretrained(str(base_dir))).save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def teacher():
    with scripted_teacher(GOLDEN, TEACHER_ACCURACY) as server:
        yield server


@pytest.fixture(scope="module")
def weak_teacher():
    with scripted_teacher(GOLDEN, WRONG_EVERYWHERE) as server:
        yield server


# -- a world: store, spec, service context ----------------------------------------------------


@dataclass
class World:
    ctx: ServiceContext
    deps: Deps
    store: LocalArtifactStore
    spec: ArtifactRef
    base: ArtifactRef
    adapters: dict[str, ArtifactRef] = field(default_factory=dict)


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_spec(
    store: LocalArtifactStore, teacher_url: str, base: ArtifactRef, **over
) -> ArtifactRef:
    from shared.tasks.spec import TaskSpec

    data = {
        "name": "triage",
        "instructions": INSTRUCTIONS,
        "output_schema": SCHEMA,
        "use_cases": [{"name": "it", "weight": 1}, {"name": "billing", "weight": 1}],
        "negatives": {"share": 0.2, "expected": {"priority": "escalate"}},
        "golden_set": store.put_bytes(_jsonl(GOLDEN)),
        "probe_set": store.put_bytes(_jsonl(PROBES)),
        "general_text": store.put_bytes(GENERAL_TEXT.encode()),
        "thresholds": {
            "min_quality_vs_teacher": 0.85,
            "min_teacher_quality": 0.4,
            "max_general_regression": 0.5,
            "p95_latency_ms": 600000,
            "max_iterations": 2,
        },
        "teacher": {
            "base_url": teacher_url,
            "model": "scripted-teacher",
            "price_per_1k_prompt_tokens": 0.01,
            "price_per_1k_completion_tokens": 0.03,
        },
        "student": {"base_model": "tiny", "base_model_ref": base, "max_seq_len": 64},
        "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
        **over,
    }
    spec = TaskSpec.model_validate(data)
    return store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")


def make_world(tmp_path: Path, db: Database, teacher: ScriptedTeacher, base_dir: Path, **adapters):
    store = LocalArtifactStore(tmp_path / "artifacts")
    base = store_model_dir(store, base_dir, "tiny-base")
    platform = PlatformSettings(home=tmp_path / "home", database_url=db.url)
    ctx = ServiceContext(
        name="evaluator",
        settings=platform,
        db=db,
        broker=make_broker("nats://127.0.0.1:1", client_name="unused"),
        policy=ConsumerPolicy(),
        artifacts=AsyncArtifactStore(store),
    )
    world = World(
        ctx, build_deps(ctx, SETTINGS), store, make_spec(store, teacher.base_url, base), base
    )
    for name, directory in adapters.items():
        world.adapters[name] = store_model_dir(
            store, directory, name, kind="adapter", base_model=base.sha256
        )
    return world


def trained(world: World, adapter: str, iteration: int = 1) -> TrainingCompleted:
    return TrainingCompleted(
        cycle_id=uuid.uuid4(),
        producer="trainer",
        run_id=uuid.uuid4(),
        task_name="triage",
        task_version=1,
        task_spec=world.spec,
        iteration=iteration,
        dataset_version="d" * 64,
        base_model=world.base,
        adapter=world.adapters[adapter],
        report=world.spec,
    )


@dataclass
class FakeMessage:
    """The kernel's RawMessage port, so the real consumer policy drives the handler."""

    body: bytes
    subject: str
    delivery: int = 1
    stream_sequence: int = 1
    calls: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.calls.append("ack")

    async def nack(self, delay: float) -> None:
        self.calls.append("nack")

    async def reject(self) -> None:
        self.calls.append("reject")

    async def in_progress(self) -> None:
        self.calls.append("in_progress")


async def deliver(world: World, event: Event, delivery: int = 1) -> str:
    """One delivery through the kernel's consumer policy and the stage template's handler."""
    [stage] = [s for s in stages(world.deps) if s.consumes is type(event)]
    msg = FakeMessage(event.model_dump_json().encode(), event.subject, delivery)
    return await process(
        msg,
        type(event),
        handler_for(stage, service="evaluator", db=world.ctx.db),
        service="evaluator",
        consumer=TRAIN if isinstance(event, TrainingCompleted) else QUANT,
        db=world.ctx.db,
        policy=world.ctx.policy,
    )


async def answers(db: Database, cause: Event) -> dict[str, list]:
    """Events in the outbox caused by `cause`, directly or through its evaluation."""
    async with db.uow() as uow:
        rows = (
            await uow.session.execute(
                select(
                    OutboxRow.event_id, OutboxRow.causation_id, OutboxRow.subject, OutboxRow.payload
                )
            )
        ).all()
    parents = {r.event_id: r.causation_id for r in rows}
    cause_id = str(cause.event_id)
    by_subject: dict[str, list] = {}
    for r in rows:
        if cause_id in (r.causation_id, parents.get(r.causation_id or "")):
            event = event_class(r.subject).model_validate_json(r.payload)
            by_subject.setdefault(r.subject, []).append(event)
    return by_subject


async def count(db: Database, table) -> int:
    async with db.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(table))


async def load_report(world: World, ref: ArtifactRef) -> dict:
    return json.loads(await world.ctx.artifacts.get_bytes(ref))


# -- scenarios --------------------------------------------------------------------------------


async def test_pass_then_iterate_then_fail_then_quantized(
    sqlite_db, tmp_path, teacher, base_dir, passing_adapter_dir, untrained_adapter_dir
):
    """One cycle's life on one database, so the caches carry from step to step."""
    world = make_world(
        tmp_path,
        sqlite_db,
        teacher,
        base_dir,
        passing=passing_adapter_dir,
        untrained=untrained_adapter_dir,
    )
    asked_before = len(teacher.requests)

    # 1. A candidate as good as the teacher passes; nothing else is asked of the cycle.
    first = trained(world, "passing")
    assert await deliver(world, first) == "acked"
    out = await answers(sqlite_db, first)
    [done] = out.pop(EvaluationCompleted.subject)
    assert out == {}, "a pass needs no follow-up"
    assert done.passed and done.candidate_kind == "adapter"
    assert done.metrics["quality.candidate"] == pytest.approx(0.4)
    assert done.metrics["quality.teacher"] == pytest.approx(0.4)
    assert done.metrics["quality.base"] == 0.0
    assert done.metrics["slice.it.candidate"] == 1.0
    # It answers every input with the one answer it learned: valid JSON, right only on "it".
    assert done.metrics["json_validity.candidate"] == 1.0
    assert done.metrics["schema_validity.candidate"] == 1.0
    assert done.metrics["field_match.team.candidate"] == pytest.approx(0.4)
    assert done.metrics["field_match.priority.candidate"] == pytest.approx(0.8)
    assert done.metrics["refusal.candidate"] == 0.0
    assert done.metrics["cost_per_query_usd.teacher"] > 0
    assert done.metrics["cost_per_query_usd.candidate"] > 0
    assert "perplexity.candidate" in done.metrics and "general_regression" in done.metrics
    assert {g.name: g.passed for g in done.gates} == {
        "teacher_quality": True,
        "quality_vs_teacher": True,
        "general_regression": True,
    }
    assert done.failing_slices == []
    assert len(teacher.requests) - asked_before == len(GOLDEN)
    report = await load_report(world, done.report)
    assert set(report["artifacts"]) == {"report.md", "slices.png", "latency.png"}
    # The gates read concurrent waits where the worker measures them, else single ones.
    bases = report["models"]["candidate"]["latency"]
    assert report["latency_basis"] == ("concurrent" if "concurrent" in bases else "single")
    assert report["models"]["candidate"]["latency"]["single"]["n"] == SETTINGS.latency_samples
    assert report["models"]["candidate"]["latency"]["amortised"]["n"] == len(GOLDEN)
    md = await world.ctx.artifacts.get_bytes(
        ArtifactRef.model_validate(report["artifacts"]["report.md"])
    )
    assert b"**PASSED** (passed)" in md

    # 2. A worse candidate fails and asks for another iteration on the slice it trails in.
    second = trained(world, "untrained")
    assert await deliver(world, second) == "acked"
    out = await answers(sqlite_db, second)
    [done] = out[EvaluationCompleted.subject]
    [again] = out[CycleIterationRequested.subject]
    assert not done.passed and done.failing_slices == ["it"]
    assert again.iteration == 2 and again.failing_slices == ["it"]
    assert again.error_patterns and all(p.field == "priority" for p in again.error_patterns)
    assert again.evaluation_report == done.report and again.causation_id == done.event_id
    assert len(teacher.requests) - asked_before == len(GOLDEN), "teacher answers were cached"
    report = await load_report(world, done.report)
    assert report["models"]["teacher"]["cached"] and report["models"]["base"]["cached"]
    assert not report["models"]["candidate"]["cached"]

    # 3. The same failure at the last allowed iteration ends the cycle.
    last = trained(world, "untrained", iteration=2)
    assert await deliver(world, last) == "acked"
    out = await answers(sqlite_db, last)
    [done] = out[EvaluationCompleted.subject]
    [failed] = out[CycleFailed.subject]
    assert CycleIterationRequested.subject not in out
    assert failed.stage == "evaluation" and "iteration 2 of max_iterations 2" in failed.reason
    assert (await load_report(world, done.report))["models"]["candidate"]["cached"]

    # 4. Redelivery of an applied event has no second effect.
    outbox, evaluations = await count(sqlite_db, OutboxRow), await count(sqlite_db, EvaluationRow)
    assert await deliver(world, first, delivery=2) == "acked"
    assert await count(sqlite_db, OutboxRow) == outbox
    assert await count(sqlite_db, EvaluationRow) == evaluations == 3
    assert await count(sqlite_db, ResultRow) == 4  # teacher, base, two adapters

    # 5. Quantized variants against the passing adapter's own verdict. A merged fp32 copy
    #    stands in for a quantized model: both are a full safetensors directory here.
    merged = await asyncio.to_thread(merge, base_dir, passing_adapter_dir, tmp_path / "merged")
    variant = store_model_dir(world.store, merged, "merged")
    good = quantized(world, first, variant)
    assert await deliver(world, good) == "acked"
    [done] = (await answers(sqlite_db, good))[EvaluationCompleted.subject]
    assert done.passed and done.candidate_kind == "quantized" and done.quant_format == "int8"
    assert done.metrics["quant_retention"] == pytest.approx(1.0)
    assert done.iteration == 1
    # The base model posing as a variant keeps none of the quality: reported, not deployed.
    bad = quantized(world, first, world.base)
    assert await deliver(world, bad) == "acked"
    out = await answers(sqlite_db, bad)
    [done] = out.pop(EvaluationCompleted.subject)
    assert out == {}, "a failed variant does not end the cycle"
    assert not done.passed and done.metrics["quant_retention"] == 0.0
    assert [g.name for g in done.gates if not g.passed] == ["quant_retention"]


async def test_a_teacher_too_weak_for_the_task_ends_the_cycle(
    sqlite_db, tmp_path, weak_teacher, base_dir, untrained_adapter_dir
):
    """A teacher at 0 would have set the student's bar at 0: a 0 % student used to pass."""
    world = make_world(tmp_path, sqlite_db, weak_teacher, base_dir, untrained=untrained_adapter_dir)
    event = trained(world, "untrained")
    assert await deliver(world, event) == "acked"
    out = await answers(sqlite_db, event)
    [done] = out.pop(EvaluationCompleted.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}, "no iteration: more data from this teacher cannot fix it"
    assert not done.passed and done.failing_slices == []
    assert done.metrics["quality.teacher"] == 0.0
    teacher_gate = next(g for g in done.gates if g.name == "teacher_quality")
    assert not teacher_gate.passed and teacher_gate.reason == "teacher too weak for this task"
    assert teacher_gate.value == 0.0 and teacher_gate.threshold == 0.4
    assert failed.stage == "evaluation" and failed.causation_id == done.event_id
    assert failed.reason.startswith("teacher too weak for this task")
    report = await load_report(world, done.report)
    assert report["outcome"] == "failed" and report["reason"] == failed.reason


# Budgets no model can meet (a thousandth of a millisecond; a millionth of the teacher's time),
# so a verdict does not hang on how fast this machine is; quality bars the passing adapter meets.
TOO_SLOW_FOR_ANY_MODEL = {
    "min_quality_vs_teacher": 0.85,
    "min_teacher_quality": 0.4,
    "max_general_regression": 0.5,
    "p95_latency_ms": 0.001,
    "max_latency_vs_teacher": 1e-6,
    "max_iterations": 2,
}


async def test_an_adapter_passes_on_what_its_weights_decide_and_reports_its_speed(
    sqlite_db, tmp_path, teacher, base_dir, passing_adapter_dir
):
    """Quality as good as the teacher's, with serving budgets no model can meet: the adapter
    passes here, since the quantizer gates latency and cost on each form on its own engine
    (tests/integration/test_quantizer_service.py ends the cycle there); the transformers
    figures and the ratios to the teacher are still measured and reported."""
    world = make_world(tmp_path, sqlite_db, teacher, base_dir, passing=passing_adapter_dir)
    thresholds = {**TOO_SLOW_FOR_ANY_MODEL, "max_cost_vs_teacher": 1e-9}
    world.spec = make_spec(world.store, teacher.base_url, world.base, thresholds=thresholds)
    event = trained(world, "passing", iteration=1)
    assert await deliver(world, event) == "acked"
    out = await answers(sqlite_db, event)
    [done] = out.pop(EvaluationCompleted.subject)
    assert out == {}, "no cycle.failed and no iteration: the quantizer takes it from here"
    assert done.passed
    assert {g.name: g.passed for g in done.gates} == {
        "teacher_quality": True,
        "quality_vs_teacher": True,
        "general_regression": True,
    }
    m = done.metrics
    assert m["vs_teacher.latency_p95_ms.ratio"] == pytest.approx(
        m["vs_teacher.latency_p95_ms.student"] / m["vs_teacher.latency_p95_ms.teacher"]
    )
    assert m["vs_teacher.cost_per_query_usd.ratio"] > 0
    assert m["vs_teacher.quality.ratio"] == pytest.approx(1.0)
    # What the quantizer compares each form with (quantizer.domain.TEACHER_P95, TEACHER_COST).
    assert m["latency_p95_ms.teacher.single"] > 0 and m["cost_per_query_usd.teacher"] > 0
    report = await load_report(world, done.report)
    assert report["outcome"] == "passed" and "quantizer" in report["serving_gates"]
    assert report["vs_teacher"]["primary_metric"] == "exact_row"
    assert report["vs_teacher"]["latency_p95_ms"]["student_basis"] == report["latency_basis"]
    assert report["latency_basis"] in {"concurrent", "single"}, (
        "a per-request wait, as the teacher's"
    )


async def test_without_quantization_a_latency_only_failure_ends_the_cycle_without_iterating(
    sqlite_db, tmp_path, teacher, base_dir, passing_adapter_dir
):
    """A task with `quantization: []` is served as the adapter timed here, so its serving
    gates apply here: quality as good as the teacher's, slower than any budget, and more data
    cannot help."""
    world = make_world(tmp_path, sqlite_db, teacher, base_dir, passing=passing_adapter_dir)
    # Cost is gated too, generously, to show it is measured and reported beside them.
    thresholds = {**TOO_SLOW_FOR_ANY_MODEL, "max_cost_vs_teacher": 1e6}
    world.spec = make_spec(
        world.store, teacher.base_url, world.base, thresholds=thresholds, quantization=[]
    )
    event = trained(world, "passing", iteration=1)
    assert await deliver(world, event) == "acked"
    out = await answers(sqlite_db, event)
    [done] = out.pop(EvaluationCompleted.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}, "no iteration although iteration 1 of 2 leaves one"
    assert {g.name: g.passed for g in done.gates} == {
        "teacher_quality": True,
        "quality_vs_teacher": True,
        "general_regression": True,
        "p95_latency_ms": False,
        "latency_vs_teacher": False,
        "cost_vs_teacher": True,
    }
    assert failed.stage == "evaluation" and failed.causation_id == done.event_id
    assert "more training data cannot fix p95_latency_ms, latency_vs_teacher" in failed.reason
    report = await load_report(world, done.report)
    assert report["serving_gates"].startswith("applied here")


async def test_iteration_feedback_carries_error_patterns_and_no_golden_input(
    sqlite_db, tmp_path, teacher, base_dir, untrained_adapter_dir
):
    world = make_world(tmp_path, sqlite_db, teacher, base_dir, untrained=untrained_adapter_dir)
    event = trained(world, "untrained")
    assert await deliver(world, event) == "acked"
    out = await answers(sqlite_db, event)
    [done] = out[EvaluationCompleted.subject]
    [again] = out[CycleIterationRequested.subject]
    assert again.error_patterns, "the student's confusions travel with the iteration"
    # Labels only: priority is enumerated by the schema; team is free text, so it has none.
    assert {p.field for p in again.error_patterns} == {"priority"}
    assert {p.expected for p in again.error_patterns} <= {"low", "escalate"}
    assert {p.got for p in again.error_patterns} <= {
        "low",
        "escalate",
        "<invalid>",
        "<missing>",
        "<other>",
    }
    wrong = round(len(GOLDEN) * (1 - done.metrics["field_match.priority.candidate"]))
    assert 0 < sum(p.count for p in again.error_patterns) <= wrong
    report = await load_report(world, done.report)
    assert report["error_patterns"] == [p.model_dump(mode="json") for p in again.error_patterns]
    # What is published: the outbox row's bytes, not a re-serialisation.
    async with sqlite_db.uow() as uow:
        [payload] = (
            await uow.session.scalars(
                select(OutboxRow.payload).where(
                    OutboxRow.subject == CycleIterationRequested.subject
                )
            )
        ).all()
    for row in GOLDEN:
        windows = {row["input"][i : i + 20] for i in range(len(row["input"]) - 19)}
        assert not [w for w in windows if w in payload], f"golden input {row['id']} leaked"
        assert row["input"] not in payload


def merge(base: Path, adapter: Path, dest: Path) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), adapter)
    model.merge_and_unload().save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(dest)
    return dest


def quantized(world: World, source: TrainingCompleted, model: ArtifactRef) -> QuantizationCompleted:
    return QuantizationCompleted(
        cycle_id=source.cycle_id,
        producer="quantizer",
        task_name="triage",
        task_version=1,
        task_spec=world.spec,
        source_adapter=source.adapter,
        quant_format="int8",
        model=model,
    )


async def test_corrupted_adapter_is_refused(db, tmp_path, teacher, base_dir, untrained_adapter_dir):
    world = make_world(tmp_path, db, teacher, base_dir, untrained=untrained_adapter_dir)
    manifest = json.loads(world.store.get_bytes(world.adapters["untrained"]))
    weights = ArtifactRef.model_validate(manifest["files"]["adapter_model.safetensors"])
    path = world.store.root / object_key(weights.sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the sha256 can tell
    path.write_bytes(bytes(data))
    asked = len(teacher.requests)

    event = trained(world, "untrained")
    assert await deliver(world, event, delivery=1) == "dead_lettered_permanent"
    out = await answers(db, event)
    [letter] = out.pop(DeadLettered.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}, "no evaluation.completed, no iteration"
    assert letter.error_kind == "permanent" and letter.original_event_id == str(event.event_id)
    assert "refused" in letter.reason and weights.sha256 in letter.reason
    assert failed.stage == "evaluation" and "adapter" in failed.reason
    assert failed.causation_id == event.event_id and failed.cycle_id == event.cycle_id
    assert len(teacher.requests) == asked, "refused before any teacher token was spent"
    assert await count(db, EvaluationRow) == 0
    # Dead-lettered and marked applied: a stray redelivery does nothing more.
    assert await deliver(world, event, delivery=2) == "acked"
    assert await count(db, OutboxRow) == 2


async def test_adapter_for_another_base_is_refused(
    sqlite_db, tmp_path, teacher, base_dir, untrained_adapter_dir
):
    world = make_world(tmp_path, sqlite_db, teacher, base_dir)
    world.adapters["stray"] = store_model_dir(
        world.store, untrained_adapter_dir, "stray", kind="adapter", base_model="e" * 64
    )
    asked = len(teacher.requests)
    event = trained(world, "stray")
    assert await deliver(world, event, delivery=1) == "dead_lettered_permanent"
    out = await answers(sqlite_db, event)
    [letter] = out.pop(DeadLettered.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}, "no evaluation.completed, no iteration"
    assert letter.error_kind == "permanent" and letter.original_event_id == str(event.event_id)
    assert "was trained on base eeeeeeeeeeee" in letter.reason
    assert failed.stage == "evaluation" and "was trained on base eeeeeeeeeeee" in failed.reason
    assert failed.causation_id == event.event_id
    assert len(teacher.requests) == asked, "refused before any teacher token was spent"
    assert await count(sqlite_db, EvaluationRow) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_service_process_answers_on_the_session_nats(
    nats_server, db, tmp_path, teacher, base_dir, untrained_adapter_dir
):
    """training.completed in through JetStream, evaluation.completed out, in a real process."""
    world = make_world(tmp_path, db, teacher, base_dir, untrained=untrained_adapter_dir)
    proc = serve(
        "evaluator.main:create_app",
        nats_server.url,
        db.url,
        DISTILLERY_HOME=str(tmp_path / "home"),
        DISTILLERY_ARTIFACT_ROOT=str(world.store.root),
        EVALUATOR_BATCH_SIZE=str(SETTINGS.batch_size),
        EVALUATOR_MAX_NEW_TOKENS=str(SETTINGS.max_new_tokens),
        EVALUATOR_LATENCY_SAMPLES="1",
        EVALUATOR_PERPLEXITY_MAX_TOKENS="64",
    )
    event = trained(world, "untrained")
    try:
        async with db.uow() as uow:
            await uow.publish(event)
            await uow.commit()
        async with make_broker(nats_server.url, client_name="test") as broker:
            await broker.connect()
            await OutboxRelay(db, JetStreamPublisher(broker), producer="trainer").drain()

        async def relayed() -> list[EvaluationCompleted]:
            async with db.uow() as uow:
                payloads = await uow.session.scalars(
                    select(OutboxRow.payload).where(
                        OutboxRow.subject == EvaluationCompleted.subject,
                        OutboxRow.sent_at.is_not(None),
                    )
                )
                return [EvaluationCompleted.model_validate_json(p) for p in payloads]

        deadline = asyncio.get_running_loop().time() + 240
        while not await relayed():
            assert proc.poll() is None, f"the service exited with {proc.returncode}"
            assert asyncio.get_running_loop().time() < deadline, "no evaluation in time"
            await asyncio.sleep(0.5)
    finally:
        stop(proc)
    [done] = await relayed()
    assert done.causation_id == event.event_id and done.producer == "evaluator"
    assert not done.passed and done.failing_slices == ["it"]
    in_stream = [
        EvaluationCompleted.model_validate_json(m.data)
        for m in await stream_messages(nats_server.url, EvaluationCompleted.subject)
    ]
    assert done.event_id in {e.event_id for e in in_stream}
    iterations = await stream_messages(nats_server.url, CycleIterationRequested.subject)
    assert any(
        CycleIterationRequested.model_validate_json(m.data).causation_id == done.event_id
        for m in iterations
    )


async def test_a_variant_that_cannot_be_run_is_dead_lettered_without_ending_the_cycle(
    sqlite_db, tmp_path, teacher, base_dir, untrained_adapter_dir
):
    world = make_world(tmp_path, sqlite_db, teacher, base_dir, untrained=untrained_adapter_dir)
    source = trained(world, "untrained")
    # An adapter manifest where a full model is expected: not a transformers model directory.
    event = quantized(world, source, world.adapters["untrained"])
    assert await deliver(world, event) == "dead_lettered_permanent"
    out = await answers(sqlite_db, event)
    [letter] = out.pop(DeadLettered.subject)
    assert out == {}
    assert "not a transformers safetensors model" in letter.reason
