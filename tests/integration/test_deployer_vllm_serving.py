"""The control loop serving a vLLM variant and an adapter on vLLM, on a machine without a
GPU: DEPLOYER_VLLM_COMMAND names a scripted stand-in for vLLM's CLI (tests/fixtures/
vllm_serve.py, not vLLM) that takes `vllm serve`'s arguments and speaks its endpoints. What is
real: the model directories fetched from the store file by file, the command line the deployer
builds, the process it starts and stops, serving parity over HTTP in vLLM's request form, the
route in the NATS KV bucket, and the rollbacks (replies other than the measured ones; a server
that never starts).
"""

from __future__ import annotations

import json
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import numpy as np
import pytest
from safetensors.numpy import save_file

from deployer import repository as repo
from deployer.controller import Controller
from deployer.repository import unfinished
from deployer.routing import RouteEntry, routes_bucket
from deployer.service import Deps, operate
from deployer.settings import DeployerSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database
from shared.events.catalog import ADAPTER_VARIANT, EvaluationCompleted
from shared.events.quantization import VariantReport
from shared.models.decoding import response_format
from shared.models.store import store_model_dir
from shared.tasks.load import spec_from_json
from tests.fixtures.teacher_server import toy_spec
from tests.integration.test_deployer_service import announced, deliver, selected

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_serve.py"
VARIANT = "vllm-w8a16"
ROWS = {
    "g0": ("Invoice 9 is wrong, I was charged twice.", '{"label": "billing", "urgent": false}'),
    "g1": ("I cannot log in since Monday.", '{"label": "account", "urgent": false}'),
    "g2": ("Everything is down, nobody can pay!", '{"label": "technical", "urgent": true}'),
}


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vllm-standin.jsonl"
    monkeypatch.setenv("VLLM_STANDIN_RECORD", str(path))
    return path


def settings(**overrides) -> DeployerSettings:
    return DeployerSettings(
        vllm_command=f"{sys.executable} {STANDIN}", vllm_start_timeout_s=60, **overrides
    )


async def rolled_out(store: AsyncArtifactStore, db: Database, tmp_path: Path, replies: dict | None):
    """A stored vLLM variant (a model directory whose 'model' answers `replies`; None: one the
    stand-in cannot start on), its task spec and the quantizer's report with the replies
    measured for it, delivered as chosen."""
    model = tmp_path / "variant"
    model.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "quantization_config": {"format": "w8a16"}}
    (model / "config.json").write_text(json.dumps(config))
    save_file({"lm_head.weight": np.zeros((2, 2), dtype=np.float32)}, model / "model.safetensors")
    if replies is not None:
        (model / "replies.json").write_text(json.dumps(replies))
    ref = store_model_dir(store.sync, model, VARIANT)
    lines = [json.dumps({"id": i, "input": text, "output": "{}"}) for i, (text, _) in ROWS.items()]
    golden = await store.put_bytes("\n".join(lines).encode())
    data = toy_spec("http://127.0.0.1:9/v1", rollout={"parity_rows": len(ROWS)})
    data["golden_set"] = golden.model_dump(mode="json")
    spec_bytes = json.dumps(data).encode()
    measured = {"replies": {VARIANT: {i: r for i, (_, r) in ROWS.items()}}, "max_new_tokens": 48}
    report = await store.put_bytes(json.dumps(measured).encode())
    variant = VariantReport(
        name=VARIANT, engine="vllm", method="llm-compressor W8A16", status="evaluated", passed=True
    )
    event = selected(await store.put_bytes(spec_bytes)).model_copy(
        update={
            "chosen": VARIANT,
            "chosen_engine": "vllm",
            "chosen_model": ref,
            "report": report,
            "variants": [variant],
        }
    )
    await deliver(Deps(db=db, artifacts=store, settings=settings()), event)
    return ref, spec_from_json(spec_bytes)


@asynccontextmanager
async def controlling(url: str, db: Database, store, config: DeployerSettings, tmp_path: Path):
    """A controller on the routing bucket of the server at `url`; closed (servers stopped)
    after the block."""
    nc = await nats.connect(url)
    controller = Controller(db, store, config, tmp_path / "work")
    try:
        yield controller, await routes_bucket(nc.jetstream())
    finally:
        await controller.close()
        await nc.close()


def weights(directory: Path, name: str = "model.safetensors") -> None:
    directory.mkdir()
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, directory / name)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_vllm_variant_is_served_checked_routed_and_stopped(
    private_nats, sqlite_db: Database, tmp_path: Path, recorded: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    ref, spec = await rolled_out(store, sqlite_db, tmp_path, {t: r for t, r in ROWS.values()})
    async with controlling(private_nats.url, sqlite_db, store, settings(), tmp_path) as (
        controller,
        kv,
    ):
        assert await controller.run_once(kv) == 1
        route = RouteEntry.model_validate_json((await kv.get("toy-triage")).value)
        assert route.stage == "shadow" and route.candidate.engine == "vllm"
        assert route.candidate.model == f"toy-triage-{ref.sha256[:12]}"
        # `vllm serve` on the directory fetched from the store, under the served name.
        (started, *chats) = lines(recorded)
        argv = started["argv"]
        assert argv[:2] == ["serve", str(tmp_path / "work" / "models" / ref.sha256)]
        assert argv[argv.index("--served-model-name") + 1] == route.candidate.model
        assert "--enable-lora" not in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
        assert (Path(argv[1]) / "config.json").exists()
        # Parity asked every golden row in vLLM's form: the schema as OpenAI response_format.
        assert len(chats) == len(ROWS)
        for chat in (c["chat"] for c in chats):
            assert chat["model"] == route.candidate.model
            assert chat["response_format"] == response_format(spec.output_schema)
            assert chat["messages"][0] == {"role": "system", "content": spec.student_prompt}
        (deployment,) = await unfinished(sqlite_db)
        assert (deployment.engine, deployment.base_url) == ("vllm", route.candidate.base_url)

        await operate(Deps(sqlite_db, store, settings()), deployment.deployment_id, "rollback", "t")
        assert await controller.run_once(kv) == 1
        assert not controller._servers  # the vLLM process was stopped


async def test_a_vllm_server_answering_otherwise_is_rolled_back_before_traffic(
    private_nats, sqlite_db: Database, tmp_path: Path, recorded: Path
):
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    other = {t: '{"label": "other", "urgent": false}' for t, _ in ROWS.values()}
    await rolled_out(store, sqlite_db, tmp_path, other)
    async with controlling(private_nats.url, sqlite_db, store, settings(), tmp_path) as (
        controller,
        kv,
    ):
        await controller.run_once(kv)
        assert not controller._servers and not await unfinished(sqlite_db)
        (gone,) = await repo.recent_deployments(sqlite_db)
        assert gone.rollout.stage == "rolled_back"
        assert gone.rollout.reason.startswith("serving parity failed: "), gone.rollout.reason
        assert f"{len(ROWS)} of {len(ROWS)} replayed golden rows differ" in gone.rollout.reason


async def test_a_server_that_never_starts_is_rolled_back_after_its_tries(
    private_nats, sqlite_db: Database, tmp_path: Path, recorded: Path
):
    """The stand-in exits at once on a model directory without replies.json: each pass tries
    again, and after `server_start_attempts` the rollout ends with the error."""
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    await rolled_out(store, sqlite_db, tmp_path, None)
    async with controlling(
        private_nats.url, sqlite_db, store, settings(server_start_attempts=2), tmp_path
    ) as (
        controller,
        kv,
    ):
        await controller.run_once(kv)
        assert await unfinished(sqlite_db)  # one failed start: tried again next pass
        await controller.run_once(kv)
        assert not await unfinished(sqlite_db) and not controller._servers
        (_, back) = await announced(sqlite_db)
        assert back.stage == "rolled_back"
        assert back.reason.startswith("its model server did not start (2 tries): "), back.reason
        assert "exited with" in back.reason


async def test_an_adapter_is_served_on_its_base_as_a_lora_module_and_checked(
    private_nats, sqlite_db: Database, tmp_path: Path, recorded: Path
):
    """A task without quantization ships the adapter as evaluated: `vllm serve BASE
    --enable-lora --lora-modules NAME=ADAPTER`, requests naming the adapter, and parity against
    the replies the evaluator recorded. The stand-in's base answers otherwise than its adapter,
    so a parity pass proves the adapter answered."""
    store = AsyncArtifactStore(LocalArtifactStore(tmp_path / "store"))
    weights(base := tmp_path / "base")
    (base / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (base / "replies.json").write_text(json.dumps({t: "{}" for t, _ in ROWS.values()}))
    weights(adapter := tmp_path / "adapter", "adapter_model.safetensors")
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 12, "peft_type": "LORA"}))
    (adapter / "replies.json").write_text(json.dumps({t: r for t, r in ROWS.values()}))
    base_ref = store_model_dir(store.sync, base, "tiny")
    adapter_ref = store_model_dir(store.sync, adapter, "tiny-lora", kind="adapter")
    lines_ = [json.dumps({"id": i, "input": text, "output": "{}"}) for i, (text, _) in ROWS.items()]
    golden = await store.put_bytes("\n".join(lines_).encode())
    data = toy_spec("http://127.0.0.1:9/v1", rollout={"parity_rows": len(ROWS)}, quantization=[])
    data["golden_set"] = golden.model_dump(mode="json")
    spec_ref = await store.put_bytes(json.dumps(data).encode())
    report = {
        "base_model": base_ref.model_dump(mode="json"),
        "replies": {ADAPTER_VARIANT: {i: r for i, (_, r) in ROWS.items()}},
        "max_new_tokens": 48,
    }
    event = EvaluationCompleted(
        producer="evaluator", cycle_id=uuid.uuid4(), evaluation_id=uuid.uuid4(),
        task_name="toy-triage", task_version=1, task_spec=spec_ref, candidate=adapter_ref,
        candidate_kind="adapter", passed=True,
        report=await store.put_bytes(json.dumps(report).encode()),
    )  # fmt: skip
    await deliver(Deps(db=sqlite_db, artifacts=store, settings=settings()), event)
    async with controlling(private_nats.url, sqlite_db, store, settings(), tmp_path) as (
        controller,
        kv,
    ):
        assert await controller.run_once(kv) == 1
        route = RouteEntry.model_validate_json((await kv.get("toy-triage")).value)
        assert route.stage == "shadow" and route.candidate.engine == "vllm"
        name = f"toy-triage-{adapter_ref.sha256[:12]}"
        assert route.candidate.model == name  # vLLM picks the LoRA by the request's model
        (started, *chats) = lines(recorded)
        argv = started["argv"]
        models = tmp_path / "work" / "models"
        assert argv[1] == str(models / base_ref.sha256)  # the base the report names
        assert argv[argv.index("--lora-modules") + 1] == f"{name}={models / adapter_ref.sha256}"
        assert "--enable-lora" in argv and argv[argv.index("--max-lora-rank") + 1] == "16"
        assert argv[argv.index("--served-model-name") + 1] == f"{name}-base"
        assert [c["chat"]["model"] for c in chats] == [name] * len(ROWS)
