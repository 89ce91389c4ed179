"""The demo's simulated users (shared/cli/traffic.py) on the official `openai` client against a
real gateway on loopback: their feedback follows the answers they got, never a fixed rate."""

from __future__ import annotations

import json

import jsonschema
import pytest

from shared.cli import traffic
from shared.cli.demo_task import PACK
from shared.cli.traffic import (
    Ticket,
    User,
    drift_tickets,
    judged,
    pack_teacher,
    production_tickets,
    simulate,
)
from shared.events import FeedbackRecorded, TrafficLogged
from tests.fixtures.gateway import TASK, wait_for
from tests.fixtures.openai_upstream import SCHEMA_ANSWER

SERVED = json.loads(SCHEMA_ANSWER)  # what the scripted student answers every ticket
WRONG = {"label": "shipping", "urgent": True}


def test_users_rate_right_answers_and_correct_wrong_ones_through_the_gateway(make_gateway):
    gateway = make_gateway()
    tickets = [
        Ticket("charged twice", SERVED),  # ann: right, rated +1
        Ticket("parcel lost", WRONG),  # bob: wrong, rated -1 (he never corrects)
        Ticket("parcel late", WRONG),  # ann: wrong, corrected
        Ticket("refund please", SERVED),  # bob: right, not rated (he never rates)
    ]
    users = [User("ann", correct_share=1.0, rate_share=1.0), User("bob", 0.0, rate_share=0.0)]
    seen = []
    got = simulate(
        f"{gateway.url}/v1", gateway.keys["toy"], TASK, tickets, users, on_sent=seen.append
    )

    assert len(seen) == len(got.sent) == 4 and all(s.ok for s in got.sent)
    by_user = {(s.user, s.right, s.feedback) for s in got.sent}
    assert by_user == {
        ("ann", True, "+1"),
        ("ann", False, "correction"),
        ("bob", False, "-1"),
        ("bob", True, None),
    }
    assert got.line().startswith("4 requests from 2 users, 0 errors, P50 ")
    assert "2 of 4 answers right; feedback: 1 x +1, 1 x -1, 1 corrections" in got.line()

    wait_for(lambda: len(gateway.published.of(FeedbackRecorded)) == 3)
    traces = {t.request_id: t for t in gateway.published.of(TrafficLogged)}
    said = {(f.user_id, f.rating, f.correction) for f in gateway.published.of(FeedbackRecorded)}
    # The gateway scopes a user id to the key that vouches for it.
    assert said == {
        ("toy/ann", 1, None),
        ("toy/bob", -1, None),
        ("toy/ann", None, json.dumps(WRONG)),
    }
    # Every verdict names a request the gateway logged, from the user who sent it.
    for f in gateway.published.of(FeedbackRecorded):
        assert f.request_id in traces and f.task_name == TASK


def test_silent_users_send_no_feedback(make_gateway):
    gateway = make_gateway()
    quiet = User("cy", correct_share=0.0, complain_share=0.0, rate_share=0.0)
    tickets = [Ticket("charged twice", SERVED), Ticket("parcel lost", WRONG)]
    got = simulate(f"{gateway.url}/v1", gateway.keys["toy"], TASK, tickets, [quiet])
    assert [(s.right, s.feedback) for s in got.sent] in (
        [(True, None), (False, None)],
        [(False, None), (True, None)],
    )
    wait_for(lambda: len(gateway.published.of(TrafficLogged)) == 2)
    assert not gateway.published.of(FeedbackRecorded)


def test_feedback_the_gateway_refuses_is_counted_and_the_answer_kept(make_gateway):
    gateway = make_gateway()
    huge = Ticket("parcel lost", {"label": "x" * 70_000})  # a correction over the size limit
    fixer = User("ann", correct_share=1.0)
    got = simulate(f"{gateway.url}/v1", gateway.keys["toy"], TASK, [huge], [fixer])
    assert [(s.ok, s.right, s.feedback) for s in got.sent] == [(True, False, "lost")]
    assert got.line().endswith(", 1 not accepted")
    assert not gateway.published.of(FeedbackRecorded)


def test_a_key_the_gateway_refuses_is_an_error_and_draws_no_feedback(make_gateway, monkeypatch):
    monkeypatch.setattr(traffic, "KEY_WAIT_S", 0.5)
    gateway = make_gateway()
    got = simulate(f"{gateway.url}/v1", "not-a-key", TASK, [Ticket("x", SERVED)], [User("ann")])
    assert [(s.ok, s.right, s.feedback) for s in got.sent] == [(False, None, None)]
    assert got.percentile(0.5) is None and "1 errors, no answers" in got.line()
    assert not gateway.published.of(FeedbackRecorded)


def test_an_answer_is_right_only_when_every_labelled_field_is():
    assert judged(json.dumps({**SERVED, "extra": 1}), SERVED)
    assert judged(json.dumps(WRONG), SERVED) is False
    assert judged("not json", SERVED) is False and judged("[1]", SERVED) is False
    assert judged(None, SERVED) is None


@pytest.mark.slow
def test_production_tickets_are_neither_golden_nor_training_tickets():
    made = production_tickets(PACK, 400)
    assert len({t.input for t in made}) == 400
    # The stand-in teacher knows its pool of 400; the analysis phase sends the first 48.
    assert production_tickets(PACK, 48) == made[:48]
    teacher = pack_teacher(PACK)
    golden = {r["input"] for r in teacher.golden_rows()}
    synthetic = {r["input"] for r in teacher.synthetic_rows()}
    assert not {t.input for t in made} & (golden | synthetic)
    assert {t.output["language"] for t in made} == {"en", "de", "fr", "es"}
    # The stand-in teacher answers every one of them with its right labels.
    assert_the_stand_in_answers(teacher, made)


def test_production_sends_rounds_until_the_rollout_is_finished(make_gateway, monkeypatch):
    """The demo's production phase: rounds of users' traffic until the rollout is full (or
    rolled back), the ticket pool going round when it runs out (here 12 tickets, 24 a round)."""
    from shared.cli import demo_traffic

    monkeypatch.setattr(demo_traffic, "TASK", TASK)
    gateway = make_gateway(stage="shadow", burst=1000)
    stages = iter([None, "shadow", "ab", "full"])
    said: list[str] = []
    last = demo_traffic.production(
        PACK, f"{gateway.url}/v1", gateway.keys["toy"], lambda: next(stages), said.append,
        timeout_s=120, tickets=demo_traffic.ANALYSIS_REQUESTS + 12,
    )  # fmt: skip
    assert last == "full"
    assert [m.split("(rollout: ")[1] for m in said] == ["not started)", "shadow)", "ab)"]
    assert all(m.startswith(f"production: {demo_traffic.ROUND} requests from ") for m in said)
    wait_for(lambda: len([t for t in gateway.traces() if t.arm != "shadow"]) == 72, timeout=30)


@pytest.mark.slow
def test_the_drift_phase_tickets_are_a_kind_the_task_never_saw_and_the_teacher_knows():
    payroll = drift_tickets(PACK, 240)
    assert len({t.input for t in payroll}) == 240
    teacher = pack_teacher(PACK)
    known = {r["input"] for r in [*teacher.golden_rows(), *teacher.synthetic_rows()]}
    known |= {t.input for t in production_tickets(PACK, 400)}
    assert not {t.input for t in payroll} & known
    # The task predates the product line: no instruction, use case or example names it.
    assert "payroll" not in (PACK / "spec.yaml").read_text().lower()
    assert not any("payroll" in text.lower() for text in known)
    # Labelled by the pack's rules and valid against its schema; several routes, not one.
    schema = json.loads((PACK / "schema.json").read_text())
    for t in payroll:
        jsonschema.validate(t.output, schema)
        assert t.output["product"] == "none"
        assert t.output["needs_human"] == (
            t.output["priority"] == "urgent" or "refund" in t.input.lower()
        )
    assert {t.output["category"] for t in payroll} == {
        "technical",
        "billing",
        "account",
        "feature_request",
    }
    assert {t.output["priority"] for t in payroll} == {"low", "medium", "high", "urgent"}
    assert_the_stand_in_answers(teacher, payroll)


def assert_the_stand_in_answers(teacher, tickets: list[Ticket]) -> None:
    """The pack's stand-in teacher answers every ticket with its right labels."""
    stand_in = teacher.StandInTeacher(teacher.synthetic_rows(), teacher.known_rows())
    for t in tickets:
        reply = stand_in.reply(
            [{"role": "system", "content": "..."}, {"role": "user", "content": t.input}]
        )
        assert json.loads(reply) == t.output
