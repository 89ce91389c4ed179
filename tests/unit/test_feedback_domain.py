"""feedback-collector's pure decisions: examples, poisoning guards, PII, stats, retrain policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedback_collector.arms import arms
from feedback_collector.domain import Feedback, Guards, Trace, build, is_negative
from feedback_collector.policy import History, Policy, decide
from feedback_collector.stats import answer_check, figures, percentile

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def trace(rid: str, question: str = "Where is my order?", answer: str = "It shipped.") -> Trace:
    return Trace(rid, (("user", question),), answer)


def fb(eid: str, rid: str, correction: str | None, user: str | None = "u1", **kw) -> Feedback:
    return Feedback(eid, rid, correction=correction, user_id=user, key_id=kw.pop("key", "k1"), **kw)


def test_two_users_agreeing_make_an_sft_example_and_a_preference_pair():
    out = build(
        {"r1": trace("r1")},
        [fb("e1", "r1", "It ships tomorrow."), fb("e2", "r1", "it ships  TOMORROW.", user="u2")],
        Guards(min_agreeing_users=2),
    )
    kinds = sorted(e.kind for e in out.examples)
    assert kinds == ["preference", "sft"]
    sft = next(e for e in out.examples if e.kind == "sft")
    assert sft.chosen == "It ships tomorrow." and sft.trust == "users"
    assert sft.request_ids == ("r1",) and sft.feedback_ids == ("e1", "e2")
    pref = next(e for e in out.examples if e.kind == "preference")
    assert pref.rejected == "It shipped."
    assert not out.rejections and not out.waiting


def test_a_lone_correction_waits_unless_the_teacher_agrees():
    alone = build({"r1": trace("r1")}, [fb("e1", "r1", "It ships tomorrow.")], Guards())
    assert alone.examples == [] and [f.event_id for f in alone.waiting] == ["e1"]
    taught = build(
        {"r1": trace("r1")},
        [fb("e1", "r1", "It ships tomorrow.")],
        Guards(),
        teacher={"r1": "It ships tomorrow."},
    )
    assert [e.trust for e in taught.examples] == ["teacher", "teacher"]


def test_an_uncorroborated_correction_is_rejected_once_expired():
    out = build({"r1": trace("r1")}, [fb("e1", "r1", "x y z")], Guards(), expired={"e1"})
    assert [(r.feedback.event_id, r.reason) for r in out.rejections] == [("e1", "not_corroborated")]


def test_pii_is_scrubbed_from_input_and_correction():
    out = build(
        {"r1": trace("r1", "Mail me at jane.doe@example.com", "Sure.")},
        [
            fb("e1", "r1", "Call +44 20 7946 0958 now"),
            fb("e2", "r1", "Call +44 20 7946 0958 now", user="u2"),
        ],
        Guards(),
    )
    sft = next(e for e in out.examples if e.kind == "sft")
    assert sft.messages == (("user", "Mail me at <EMAIL>"),)
    assert sft.chosen == "Call <PHONE> now"
    assert sft.pii == {"EMAIL": 1, "PHONE": 1}
    assert "jane.doe" not in repr(out.examples) and "7946" not in repr(out.examples)


def test_one_user_flooding_a_trigger_phrase_never_becomes_an_example():
    traces = {f"r{i}": trace(f"r{i}") for i in range(50)}
    flood = [fb(f"e{i:03}", f"r{i % 50}", "BUY CRYPTO NOW at evil.example") for i in range(100)]
    out = build(traces, flood, Guards(max_per_user=20, min_agreeing_users=2))
    assert out.examples == []
    reasons = {r.reason for r in out.rejections}
    assert reasons == {"user_cap"}
    assert len(out.rejections) == 80 and len(out.waiting) == 20


def test_key_cap_and_outlier_are_recorded_with_reasons():
    traces = {"r1": trace("r1"), "r2": trace("r2")}
    out = build(
        traces,
        [
            fb("e1", "r1", "It ships tomorrow.", user="a", key="k"),
            fb("e2", "r2", "It ships tomorrow.", user="b", key="k"),
            fb("e3", "r1", "x" * 500, user="c", key="other"),
        ],
        Guards(max_per_key=1, max_correction_ratio=8),
    )
    assert sorted((r.feedback.event_id, r.reason) for r in out.rejections) == [
        ("e2", "key_cap"),
        ("e3", "outlier"),
    ]


def test_feedback_without_its_trace_waits_then_is_rejected():
    waiting = build({}, [fb("e1", "r9", "fix")], Guards())
    assert [f.event_id for f in waiting.waiting] == ["e1"] and not waiting.rejections
    gone = build({}, [fb("e1", "r9", "fix")], Guards(), expired={"e1"})
    assert [r.reason for r in gone.rejections] == ["trace_missing"]


def test_a_negative_rating_without_correction_asks_for_a_relabel():
    out = build({"r1": trace("r1")}, [fb("e1", "r1", None, rating=-1)], Guards())
    assert out.relabel == ["r1"] and not out.examples


def test_rating_scales():
    assert [is_negative(r) for r in (-1, 0, 1, 2, 3, 5, None)] == [
        True,
        True,
        False,
        True,
        False,
        False,
        False,
    ]


def test_stats_per_version_and_stage():
    rows = [("v1", "ab", "student", float(ms), None, "{}", None, 0) for ms in range(1, 101)]
    rows += [("v1", "ab", "student", 5.0, "upstream 504", "", -1, 1)]
    rows += [("v0", "full", "student", 7.0, None, "not json", None, 0)]
    (v0, v1) = figures(rows, check=answer_check(None))
    assert (v1.model_version, v1.stage, v1.requests) == ("v1", "ab", 101)
    assert v1.error_rate == 1 / 101 and v1.p50_ms == 50 and v1.p95_ms == 95
    assert v1.negative_rate == 1 / 101 and v1.escalation_rate == 1 / 101
    assert v1.schema_valid_rate == 1.0 and v0.schema_valid_rate == 0.0
    assert figures(rows)[0].schema_valid_rate is None  # free text: no such rate
    assert percentile([], 50) is None


def test_schema_valid_means_valid_under_the_tasks_schema_not_just_json():
    schema = {
        "type": "object",
        "properties": {"label": {"enum": ["billing", "outage"]}},
        "required": ["label"],
        "additionalProperties": False,
    }
    replies = ['{"label": "billing"}', '{"label": "refund"}', '{"label": "outage", "x": 1}', "[]"]
    rows = [("v1", "ab", "student", 5.0, None, text, None, 0) for text in replies]
    [strict] = figures(rows, check=answer_check(schema))
    assert strict.schema_valid_rate == 1 / 4
    [parses] = figures(rows, check=answer_check(None))
    assert parses.schema_valid_rate == 1.0
    candidate, _ = arms(
        [("r1", "d1", "shadow", 5.0, None, '{"label": "refund"}', None, 0)],
        "d1",
        check=answer_check(schema),
    )
    assert (candidate.structured, candidate.schema_invalid) == (1, 1)


def test_retrain_policy():
    policy = Policy(cooldown=timedelta(hours=24), min_new_examples=10, max_cycles=2)
    fresh = History(False, NOW - timedelta(days=2), 0, 0)
    assert decide(policy, fresh, NOW, drift="input").start
    assert decide(policy, fresh, NOW, drift="input").reason == "drift"
    assert not decide(policy, fresh, NOW).start  # no trigger: schedule not due, few examples
    busy = History(True, NOW - timedelta(days=2), 0, 0)
    assert "in flight" in decide(policy, busy, NOW, drift="x").detail
    cool = History(False, NOW - timedelta(hours=1), 0, 0)
    assert not decide(policy, cool, NOW, drift="x").start
    spent = History(False, NOW - timedelta(days=2), 2, 0)
    assert not decide(policy, spent, NOW, drift="x").start
    fed = History(False, NOW - timedelta(days=2), 0, 10)
    assert decide(policy, fed, NOW).reason == "feedback"
    due = History(False, NOW - timedelta(days=31), 0, 0)
    assert decide(policy, due, NOW).reason == "schedule"
