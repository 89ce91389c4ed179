"""The event catalog's contract: subjects, registration, schemas, envelope behaviour."""

from __future__ import annotations

import ast
import json
import os
import uuid
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from shared.asyncapi import catalog_document
from shared.events import CATALOG, Event, event_class
from shared.events.base import SUBJECT_PATTERN
from shared.events.catalog import (
    IDENTITIES,
    SERVICES,
    STAGES,
    CycleFailed,
    CycleRequested,
    DatasetPublished,
    DeadLettered,
    FeedbackRecorded,
    TaskRegistered,
    TrafficLogged,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
EXPECTED_SUBJECTS = {
    "distillery.task.registered.v1",
    "distillery.cycle.requested.v1",
    "distillery.cycle.iteration.requested.v1",
    "distillery.cycle.failed.v1",
    "distillery.synth.completed.v1",
    "distillery.dataset.published.v1",
    "distillery.training.progressed.v1",
    "distillery.training.completed.v1",
    "distillery.evaluation.completed.v1",
    "distillery.quantization.completed.v1",
    "distillery.variant.selected.v1",
    "distillery.rollout.changed.v1",
    "distillery.rollout.measured.v1",
    "distillery.traffic.logged.v1",
    "distillery.feedback.recorded.v1",
    "distillery.feedback.dataset.published.v1",
    "distillery.relabel.requested.v1",
    "distillery.relabel.completed.v1",
    "distillery.drift.detected.v1",
    "distillery.deadletter.recorded.v1",
}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_the_whole_loop_is_declared():
    assert set(CATALOG) == EXPECTED_SUBJECTS


def test_every_event_class_is_registered_under_its_own_subject():
    assert all_subclasses(Event) == set(CATALOG.values())
    for subject, cls in CATALOG.items():
        assert cls.subject == subject


def test_subjects_are_unique_and_well_formed():
    subjects = [cls.subject for cls in all_subclasses(Event)]
    assert len(subjects) == len(set(subjects))
    for subject in subjects:
        assert SUBJECT_PATTERN.match(subject), subject
    for bad in (
        "distillery.cycle.requested",
        "distillery.Cycle.requested.v1",
        "cycle.requested.v1",
    ):
        assert not SUBJECT_PATTERN.match(bad)


@pytest.mark.parametrize("subject", sorted(EXPECTED_SUBJECTS))
def test_json_schema_matches_snapshot(subject: str):
    schema = json.dumps(CATALOG[subject].model_json_schema(), indent=2, sort_keys=True) + "\n"
    path = SNAPSHOTS / f"{subject}.json"
    if UPDATE:
        path.write_text(schema)
    assert path.exists(), f"no snapshot for {subject}; run with UPDATE_SNAPSHOTS=1 and review"
    assert path.read_text() == schema, (
        f"{subject} changed its contract. Within a version only optional fields may be added; "
        "if this change is intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff."
    )


def test_no_stale_snapshots():
    assert {p.stem for p in SNAPSHOTS.glob("*.json")} == EXPECTED_SUBJECTS


def test_envelope_is_complete_frozen_and_strict():
    event = CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="cli")
    data = json.loads(event.model_dump_json())
    assert {"event_id", "cycle_id", "causation_id", "occurred_at", "producer"} <= set(data)
    with pytest.raises(ValidationError):
        event.task_name = "other"
    with pytest.raises(ValidationError, match="extra"):
        CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="cli", typo=1)
    assert CycleRequested.model_validate_json(event.model_dump_json()) == event


def test_caused_carries_correlation_and_causation():
    root = CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="cli")
    answer = root.caused(
        CycleFailed, producer="synth-data", task_name="t", stage="synth", reason="x"
    )
    assert answer.cycle_id == root.cycle_id
    assert answer.causation_id == root.event_id
    assert answer.event_id != root.event_id


def test_payloads_carry_references_not_bytes():
    bad_digest = {"uri": "file:///x", "sha256": "abc", "size_bytes": 1}
    with pytest.raises(ValidationError, match="sha256"):
        DatasetPublished(
            cycle_id=uuid.uuid4(), producer="curation", task_name="t", task_version=1,
            dataset_version="v", manifest=bad_digest, train=bad_digest, validation=bad_digest,
            train_examples=1, validation_examples=1,
        )  # fmt: skip


def test_unknown_subject_is_a_clear_error():
    with pytest.raises(KeyError, match="no event in the catalog"):
        event_class("distillery.nothing.happened.v1")


def test_asyncapi_document_is_current():
    assert ASYNCAPI.exists(), "run: python -m shared.asyncapi > docs/asyncapi.yaml"
    checked_in = yaml.safe_load(ASYNCAPI.read_text())
    assert checked_in == yaml.safe_load(catalog_document()), (
        "docs/asyncapi.yaml is stale; run: python -m shared.asyncapi > docs/asyncapi.yaml"
    )
    assert {ch["address"] for ch in checked_in["channels"].values()} == EXPECTED_SUBJECTS


# --- who produces and who consumes each event: the bus permissions are derived from these ---

ROOT = Path(__file__).resolve().parents[2]
EVENTS_BY_NAME = {cls.__name__: cls for cls in CATALOG.values()}
# Where each subscriber takes its event: Stage(name, Event), subscribe(router, Event),
# subscribe_batch(Event).
SUBSCRIBERS = {"Stage": 1, "subscribe": 1, "subscribe_batch": 0}


def calls(paths) -> list[ast.Call]:
    found: list[ast.Call] = []
    for path in paths:
        found += [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
    return found


def called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def event_arg(call: ast.Call, position: int, keyword: str) -> type[Event] | None:
    args = [
        *call.args[position : position + 1],
        *(k.value for k in call.keywords if k.arg == keyword),
    ]
    names = [a.id for a in args if isinstance(a, ast.Name)]
    return EVENTS_BY_NAME.get(names[0]) if names else None


def consumed_in(paths) -> set[type[Event]]:
    """The events a package subscribes to: each `Stage(name, Event, ...)` and `subscribe(...)`."""
    found = (
        event_arg(c, SUBSCRIBERS[called(c)], "consumes" if called(c) == "Stage" else "event_cls")
        for c in calls(paths)
        if called(c) in SUBSCRIBERS
    )
    return {cls for cls in found if cls}


def produced_in(paths) -> set[type[Event]]:
    """The events a package builds: `source.caused(Event, ...)` or `Event(..., producer=...)`."""
    found = set()
    for call in calls(paths):
        if called(call) == "caused":
            found.add(event_arg(call, 0, "cls"))
        elif called(call) in EVENTS_BY_NAME and any(k.arg == "producer" for k in call.keywords):
            found.add(EVENTS_BY_NAME[called(call)])
    return found - {None}


def service_packages() -> dict[str, list[Path]]:
    """Each service folder's NAME (from its settings.py) and its modules, read, not imported."""
    packages = {}
    for settings in sorted(ROOT.glob("services/*/*/settings.py")):
        tree = ast.parse(settings.read_text())
        (name,) = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["NAME"]
        ]
        packages[name] = sorted(settings.parent.glob("*.py"))
    return packages


def test_every_event_has_producers_among_the_known_identities():
    for cls in CATALOG.values():
        assert cls.producers, f"{cls.__name__}: nobody may publish it"
        assert cls.producers <= IDENTITIES, cls.__name__
        # Only services consume; ops and ingest outside apps only publish.
        assert cls.consumers <= SERVICES, cls.__name__
    assert {"ops", "ingest"} <= IDENTITIES


def test_outside_apps_publish_only_traffic_and_feedback():
    from_outside = {cls for cls in CATALOG.values() if "ingest" in cls.producers}
    assert from_outside == {TrafficLogged, FeedbackRecorded}
    assert all("ingest" not in cls.producers for cls in (TaskRegistered, CycleRequested))


def test_every_service_folder_is_a_declared_identity():
    assert service_packages(), "no services found"
    assert set(service_packages()) <= SERVICES


@pytest.mark.parametrize("service", sorted(service_packages()))
def test_declared_consumers_are_the_services_that_subscribe(service: str):
    declared = {cls for cls in CATALOG.values() if service in cls.consumers}
    assert consumed_in(service_packages()[service]) == declared


@pytest.mark.parametrize("service", sorted(service_packages()))
def test_what_a_service_builds_it_is_declared_to_produce(service: str):
    declared = {cls for cls in CATALOG.values() if service in cls.producers}
    assert produced_in(service_packages()[service]) <= declared
    # The stage template answers for every stage: a dead letter, and cycle.failed where the
    # service is a stage of the cycle (the feedback-collector's stages have ends_cycle=False).
    assert DeadLettered in declared
    assert (CycleFailed in declared) == (service in STAGES)


def test_what_the_cli_builds_ops_is_declared_to_produce():
    paths = [*ROOT.glob("shared/cli/*.py"), *ROOT.glob("shared/tasks/*.py")]
    built = produced_in(paths)
    assert {TaskRegistered, CycleRequested} <= built
    assert built <= {cls for cls in CATALOG.values() if "ops" in cls.producers}
