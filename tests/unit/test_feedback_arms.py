"""The rollout's two arms from trace rows: who counts where, and what agreement means."""

from feedback_collector.arms import arms, same_answer

DEP, OLD = "d-new", "d-live"


def row(rid, dep, arm, completion='{"a": 1}', error=None, rating=None, ms=10.0):
    return (rid, dep, arm, ms, error, completion, rating)


def test_shadow_copies_count_for_the_candidate_and_pair_with_the_live_answer():
    rows = [
        row("r1", None, "teacher", '{"a": 1}', rating=-1),
        row("r1", DEP, "shadow", '{ "a" : 1 }', ms=40.0),
        row("r2", None, "teacher", '{"a": 2}'),
        row("r2", DEP, "shadow", '{"a": 3}', ms=50.0),
        row("r3", None, "teacher", "", error="upstream 504"),
        row("r3", DEP, "shadow", "not json", ms=60.0),
    ]
    candidate, live = arms(rows, DEP)
    assert (candidate.requests, candidate.errors, candidate.p95_ms) == (3, 0, 60.0)
    # r3's live answer failed: nothing to compare it with.
    assert (candidate.compared, candidate.agreed) == (2, 1)
    assert (candidate.structured, candidate.schema_invalid) == (3, 1)
    # The client saw the teacher's answer: its rating is the live arm's, never the shadow's.
    assert (candidate.rated, live.rated, live.negative) == (0, 1, 1)
    assert (live.requests, live.errors) == (3, 1)


def test_in_ab_each_arm_keeps_the_requests_it_answered():
    rows = [
        row("r1", DEP, "student", rating=1),
        row("r2", OLD, "student", rating=-1),
        row("r3", None, "teacher"),
        row("r4", "d-other", "shadow"),  # another candidate's copy: neither arm's
    ]
    candidate, live = arms(rows, DEP)
    assert (candidate.requests, candidate.rated, candidate.negative) == (1, 1, 0)
    assert (live.requests, live.rated, live.negative) == (2, 1, 1)
    assert candidate.compared == 0


def test_agreement_is_equal_json_or_text_up_to_case_and_spacing():
    assert same_answer('{"a": [1, 2]}', '{ "a":[1,2] }')
    assert not same_answer('{"a": 1}', '{"a": "1"}')
    assert same_answer("It ships  Monday", "it ships monday")
    assert not same_answer("yes", "no")
