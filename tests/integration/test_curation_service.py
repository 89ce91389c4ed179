"""The curation stage against real databases (PostgreSQL and SQLite) and a real local artifact
store, driven through the stage template and the consumer policy (the message is a fake of the
policy's port): publish, redelivery, all-rejected, and iterations that add to a dataset.

Helpers here are shared with the other test_curation_* integration modules.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from curation.service import Deps, stages
from curation.settings import NAME, CurationSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy
from shared.events.base import ArtifactRef, Event
from shared.events.catalog import CycleFailed, DatasetPublished, DeadLettered, SynthCompleted
from shared.runtime.stage import handler_for
from shared.tasks import parse_spec
from tests.unit.test_consumer_policy import FakeMessage

CONSUMER = "curation--synth-completed-v1"
POLICY = ConsumerPolicy(max_deliver=3, backoff_base_s=0.5, backoff_cap_s=3.0)
SCHEMA = {
    "type": "object",
    "properties": {
        "priority": {"enum": ["low", "normal", "high", "escalate"]},
        "team": {"type": "string"},
    },
    "required": ["priority", "team"],
}
# Ticket words; rows drawn from them are far apart, so only planted duplicates collide.
WORDS = re.findall(
    r"\w+",
    """
    invoice refund charge login password export report calendar sync outage error page
    account plan seat upgrade cancel delivery parcel tracking printer laptop phone email
    backup restore folder permission admin role webhook api token timeout slow crash update
    install license discount coupon receipt tax address shipping return warranty battery
    screen keyboard mouse network vpn firewall server database query index cache queue
    """,
)
GOLDEN = [
    {
        "id": "g1",
        "input": "The nightly backup of the finance folder failed again with a timeout error.",
        "output": json.dumps({"priority": "high", "team": "infra"}),
        "use_case": "outage",
        "negative": False,
    }
]


def store(tmp_path: Path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def ticket(rnd: random.Random) -> str:
    return f"Ticket {rnd.randrange(10**6)}: " + " ".join(rnd.choice(WORDS) for _ in range(16))


def synth_rows(n: int, seed: int = 0, iteration: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        text = ticket(rnd)
        negative = i % 10 == 9
        rows.append(
            {
                "id": hashlib.sha256(text.encode()).hexdigest(),
                "use_case": "billing" if i % 2 else "outage",
                "style": "terse",
                "negative": negative,
                "edge_case": None,
                "iteration": iteration,
                "input": text,
                "output": json.dumps({"priority": "escalate" if negative else "low", "team": "t"}),
                "prompt_tokens": 10,
                "completion_tokens": 5,
            }
        )
    return rows


async def apply_spec(
    artifacts: AsyncArtifactStore,
    golden: bytes | None = None,
    *,
    student: dict[str, Any] | None = None,
    **curation: Any,
) -> ArtifactRef:
    if golden is None:
        golden = b"".join(json.dumps(r).encode() + b"\n" for r in GOLDEN)
    golden_ref = await artifacts.put_bytes(golden, media_type="application/jsonl")
    spec = parse_spec(
        {
            "name": "ticket-triage",
            "instructions": "Triage the support ticket. Answer with JSON only.",
            "output_schema": SCHEMA,
            "use_cases": [{"name": "billing", "weight": 1}, {"name": "outage", "weight": 1}],
            "negatives": {"share": 0.1, "expected": {"priority": "escalate"}},
            "golden_set": golden_ref.model_dump(mode="json"),
            "teacher": {"base_url": "http://127.0.0.1:9/v1", "model": "teacher"},
            "student": student or {"base_model": "tiny"},
            "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
            "curation": curation,
        }
    )
    return await artifacts.put_bytes(spec.model_dump_json().encode(), media_type="application/json")


async def synth_event(
    artifacts: AsyncArtifactStore,
    spec_ref: ArtifactRef,
    rows: list[dict[str, Any]],
    *,
    cycle_id: uuid.UUID | None = None,
    iteration: int = 1,
) -> SynthCompleted:
    batch = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    batch_ref = await artifacts.put_bytes(batch, media_type="application/jsonl")
    return SynthCompleted(
        cycle_id=cycle_id or uuid.uuid4(),
        producer="synth-data",
        task_name="ticket-triage",
        task_version=1,
        task_spec=spec_ref,
        iteration=iteration,
        batch=batch_ref,
        examples=len(rows),
    )


async def outbox(db: Database, cls: type[Event], producer: str = "curation") -> list[Any]:
    async with db.uow() as uow:
        payloads = (
            await uow.session.scalars(
                select(OutboxRow.payload).where(
                    OutboxRow.subject == cls.subject, OutboxRow.producer == producer
                )
            )
        ).all()
    return [cls.model_validate_json(p) for p in payloads]


async def count(db: Database, table) -> int:
    async with db.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(table)) or 0)


def deps(db: Database, artifacts: AsyncArtifactStore) -> Deps:
    return Deps(db=db, artifacts=artifacts, settings=CurationSettings())


async def deliver(d: Deps, event: SynthCompleted, delivery: int = 1) -> str:
    """One delivery of `event` to the curation stage, as the service's consumer runs it."""
    [stage] = stages(d)
    msg = FakeMessage(event.model_dump_json().encode(), delivery, SynthCompleted.subject)
    handler = handler_for(stage, service=NAME, db=d.db)
    return await process(
        msg, SynthCompleted, handler, service=NAME, consumer=CONSUMER, db=d.db, policy=POLICY
    )


# --- tests -------------------------------------------------------------------------------------


async def test_a_batch_is_curated_and_published(db: Database, tmp_path: Path):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts, validation_share=0.2)
    rows = synth_rows(40)
    rows.append(dict(rows[0]))  # exact duplicate
    rows.append({**rows[1], "id": "near", "input": rows[1]["input"].upper() + "!"})
    rows.append({**rows[2], "id": "bad", "output": '{"priority": "soon"}'})
    rows.append({**rows[3], "id": "gold", "input": "Hi, " + GOLDEN[0]["input"]})
    rows[4]["input"] += " Reach me at ann.lee@example.com or +44 20 7946 0958."
    event = await synth_event(artifacts, spec_ref, rows)

    assert await deliver(deps(db, artifacts), event) == "acked"

    [published] = await outbox(db, DatasetPublished)
    assert published.causation_id == event.event_id and published.cycle_id == event.cycle_id
    assert (published.train_examples, published.validation_examples) == (32, 8)
    manifest = json.loads(await artifacts.get_bytes(published.manifest))
    assert published.dataset_version == published.manifest.sha256
    assert manifest["counts"]["rejected"] == {
        "contaminated": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "schema_invalid": 1,
    }
    assert manifest["pii"] == {"EMAIL": 1, "PHONE": 1}
    assert manifest["lineage"]["sources"] == [
        {
            "kind": "synth",
            "batch": event.batch.model_dump(mode="json"),
            "cycle_id": str(event.cycle_id),
            "iteration": 1,
            "task_version": 1,
            "examples": 44,
        }
    ]
    assert manifest["thresholds"]["near_duplicate_threshold"] == 0.85
    assert manifest["files"]["train"] == published.train.model_dump(mode="json")
    train = (await artifacts.get_bytes(published.train)).decode().splitlines()
    assert len(train) == 32
    assert (
        "<EMAIL>"
        in (await artifacts.get_bytes(published.train)).decode()
        + (await artifacts.get_bytes(published.validation)).decode()
    )
    rejected = [
        json.loads(x)
        for x in (
            await artifacts.get_bytes(ArtifactRef(**manifest["files"]["rejected"]))
        ).splitlines()
    ]
    assert {r["id"] for r in rejected} == {rows[0]["id"], "near", "bad", "gold"}


async def test_redelivery_publishes_once_and_same_input_gives_same_version(
    db: Database, tmp_path: Path
):
    from curation.models import CurationDataset, CurationRun

    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts)
    event = await synth_event(artifacts, spec_ref, synth_rows(30))
    d = deps(db, artifacts)
    assert await deliver(d, event) == "acked"
    assert await deliver(d, event, delivery=2) == "acked"  # redelivered
    published = await outbox(db, DatasetPublished)
    assert len(published) == 1
    assert await count(db, CurationRun) == 1 and await count(db, CurationDataset) == 1

    # The same content announced again (a new event of the same cycle): the same version.
    again = event.model_copy(update={"event_id": uuid.uuid4()})
    assert await deliver(d, again) == "acked"
    versions = {p.dataset_version for p in await outbox(db, DatasetPublished)}
    assert versions == {published[0].dataset_version}


async def test_everything_rejected_fails_the_cycle(db: Database, tmp_path: Path):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts)
    rows = [{**r, "output": "sure, I will look into it"} for r in synth_rows(6)]
    rows.append({**rows[0], "output": "{}", "input": "?? !!"})
    event = await synth_event(artifacts, spec_ref, rows)
    assert await deliver(deps(db, artifacts), event) == "acked"
    assert await outbox(db, DatasetPublished) == []
    [failed] = await outbox(db, CycleFailed)
    assert failed.stage == "curation" and failed.causation_id == event.event_id
    assert "all 7 rows" in failed.reason and "schema_invalid 7" in failed.reason
    assert await outbox(db, DeadLettered) == [], "a normal failed answer, not a give-up"


async def test_a_later_iteration_adds_to_the_cycles_dataset(db: Database, tmp_path: Path):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts)
    d = deps(db, artifacts)
    first_rows = synth_rows(20, seed=1)
    first = await synth_event(artifacts, spec_ref, first_rows)
    assert await deliver(d, first) == "acked"
    second_rows = [*synth_rows(10, seed=2, iteration=2), {**first_rows[0], "iteration": 2}]
    second = await synth_event(
        artifacts, spec_ref, second_rows, cycle_id=first.cycle_id, iteration=2
    )
    assert await deliver(d, second) == "acked"

    one, two = sorted(await outbox(db, DatasetPublished), key=lambda e: e.iteration)
    assert two.iteration == 2 and two.train_examples + two.validation_examples == 30
    manifest = json.loads(await artifacts.get_bytes(two.manifest))
    assert manifest["lineage"]["previous_dataset"] == {
        "dataset_version": one.dataset_version,
        "manifest": one.manifest.model_dump(mode="json"),
    }
    assert [s["iteration"] for s in manifest["lineage"]["sources"]] == [1, 2]
    assert manifest["counts"]["carried_over"] == 20
    assert manifest["counts"]["rejected"] == {"exact_duplicate": 1}
