"""Pure decisions: production feedback into training examples, with the poisoning guards.

No database, no bus. The service layer loads traces and feedback, calls `build`, and stores
what it returns: examples to keep, contributions rejected (with a reason each), and the
feedback to look at again later (a correction nobody has corroborated yet).

Why each guard:
- caps per user and per key: one account, or one leaked key, cannot outvote everyone;
- agreement: a correction becomes training data only when `min_agreeing_users` distinct
  users gave the same one, or the teacher's answer agrees with it. A single user flooding a
  trigger phrase has one user's weight however many times they send it;
- outliers: a correction far longer or shorter than the answer it corrects is more likely
  an injection or a mistake than a fix;
- PII: every text is scrubbed (shared.text.pii) before it can become an example.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.text.pii import scrub

ANONYMOUS = "<anonymous>"


@dataclass(frozen=True)
class Trace:
    request_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    completion: str
    arm: str = "student"


@dataclass(frozen=True)
class Feedback:
    event_id: str
    request_id: str
    rating: int | None = None
    correction: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    escalate: bool = False

    @property
    def negative(self) -> bool:
        return is_negative(self.rating)


def is_negative(rating: int | None) -> bool:
    """-1 or 0 on the thumbs scale, 2 stars on the five-star one. The two scales overlap at 1:
    it is read as a thumbs-up (the gateway's common case), so a one-star rating counts as
    positive; an app on stars should send a correction or escalate with it."""
    return rating is not None and (rating <= 0 or rating == 2)


@dataclass(frozen=True)
class Guards:
    max_per_user: int = 20
    max_per_key: int = 200
    min_agreeing_users: int = 2
    max_correction_ratio: float = 8.0


@dataclass(frozen=True)
class Example:
    kind: str  # "sft" | "preference"
    messages: tuple[tuple[str, str], ...]
    chosen: str
    rejected: str | None
    trust: str  # "users" | "teacher"
    request_ids: tuple[str, ...]
    feedback_ids: tuple[str, ...]
    pii: dict[str, int] = field(default_factory=dict)

    @property
    def example_id(self) -> str:
        body = json.dumps([self.kind, self.messages, self.chosen, self.rejected])
        return hashlib.sha256(body.encode()).hexdigest()

    def row(self, task: str, now: datetime) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "task_name": task,
            "kind": self.kind,
            "messages": [{"role": r, "content": c} for r, c in self.messages],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "trust": self.trust,
            "request_ids": list(self.request_ids),
            "feedback_ids": list(self.feedback_ids),
            "pii": self.pii,
            "created_at": now,
        }


def seen_by_client(rows: Iterable[Any]) -> tuple[dict[str, Trace], dict[str, str]]:
    """Stored traces (with arm, error, request_id, messages, completion) as (the answer each
    client saw per request: the student's where one answered, else the teacher's, the live
    model before any student is fully rolled out; the teacher's answer per request)."""
    traces: dict[str, Trace] = {}
    teacher: dict[str, str] = {}
    for t in rows:
        if t.arm == "shadow":
            continue  # a copy nobody saw: nothing to correct
        if t.arm == "teacher" and not t.error:
            teacher[t.request_id] = t.completion
        if t.arm != "teacher" or t.request_id not in traces:
            msgs = tuple((m["role"], m["content"]) for m in t.messages)
            traces[t.request_id] = Trace(t.request_id, msgs, t.completion, t.arm)
    return traces, teacher


@dataclass(frozen=True)
class Rejection:
    feedback: Feedback
    reason: str  # user_cap, key_cap, outlier, empty, trace_missing, not_corroborated
    detail: str


@dataclass
class Build:
    examples: list[Example] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    waiting: list[Feedback] = field(default_factory=list)  # kept for a later build
    relabel: list[str] = field(default_factory=list)  # request ids the teacher should relabel


def normalise(text: str) -> str:
    """What counts as 'the same correction': case and whitespace do not."""
    return " ".join(text.split()).casefold()


def _outlier(correction: str, completion: str, ratio: float) -> str | None:
    n, base = len(correction.strip()), max(len(completion.strip()), 1)
    if n == 0:
        return "empty correction"
    if completion.strip() and (n > base * ratio or n * ratio < base):
        return f"correction is {n} chars against an answer of {base} (ratio limit {ratio:g})"
    return None


def _scrub_messages(messages) -> tuple[tuple[tuple[str, str], ...], Counter[str]]:
    total: Counter[str] = Counter()
    out = []
    for role, content in messages:
        text, counts = scrub(content)
        total.update(counts)
        out.append((role, text))
    return tuple(out), total


def build(
    traces: dict[str, Trace],
    feedback: list[Feedback],
    guards: Guards,
    *,
    teacher: dict[str, str] | None = None,
    expired: set[str] | frozenset[str] = frozenset(),
) -> Build:
    """Turn matched feedback into examples; `teacher` maps request id -> the teacher's answer
    for that input (a relabel or a teacher-arm trace); `expired` lists feedback event ids
    that waited too long for corroboration or their trace."""
    teacher = teacher or {}
    out = Build()
    per_user: Counter[str] = Counter()
    per_key: Counter[str] = Counter()
    # request id -> normalised correction -> the feedback that gave it
    groups: dict[str, dict[str, list[Feedback]]] = defaultdict(lambda: defaultdict(list))

    for fb in feedback:  # in arrival order: caps keep a user's first contributions
        trace = traces.get(fb.request_id)
        if trace is None:
            if fb.event_id in expired:
                out.rejections.append(Rejection(fb, "trace_missing", "its trace never arrived"))
            else:
                out.waiting.append(fb)
            continue
        user, key = fb.user_id or ANONYMOUS, fb.key_id or ANONYMOUS
        if fb.correction is None and not (fb.negative and fb.request_id not in teacher):
            continue  # nothing to learn from, and nothing that costs a teacher call
        # A thumbs-down asks the teacher (a paid call, then a trusted example): it spends the
        # same caps as a correction, so one account cannot steer the data by rating alone.
        if per_user[user] >= guards.max_per_user:
            out.rejections.append(
                Rejection(fb, "user_cap", f"user over {guards.max_per_user} contributions")
            )
            continue
        if per_key[key] >= guards.max_per_key:
            out.rejections.append(
                Rejection(fb, "key_cap", f"key over {guards.max_per_key} contributions")
            )
            continue
        if fb.correction is None:
            per_user[user] += 1
            per_key[key] += 1
            out.relabel.append(fb.request_id)
            continue
        if why := _outlier(fb.correction, trace.completion, guards.max_correction_ratio):
            out.rejections.append(Rejection(fb, "outlier", why))
            continue
        per_user[user] += 1
        per_key[key] += 1
        groups[fb.request_id][normalise(fb.correction)].append(fb)

    for request_id, by_text in groups.items():
        trace = traces[request_id]
        for text, given in by_text.items():
            users = {f.user_id for f in given if f.user_id}
            answer = teacher.get(request_id)
            if answer is not None and normalise(answer) == text:
                trust = "teacher"
            elif len(users) >= guards.min_agreeing_users:
                trust = "users"
            else:
                for fb in given:
                    if fb.event_id in expired:
                        detail = f"{len(users)} user(s) agree, {guards.min_agreeing_users} needed"
                        out.rejections.append(Rejection(fb, "not_corroborated", detail))
                    else:
                        out.waiting.append(fb)
                continue
            out.examples.extend(_examples(trace, given, trust))
    return out


def _examples(trace: Trace, given: list[Feedback], trust: str) -> list[Example]:
    # The wording most of them used; on a tie, the first to arrive.
    texts = Counter(f.correction or "" for f in given)
    chosen = max(texts, key=lambda t: texts[t])
    return examples_for(trace, chosen, tuple(sorted(f.event_id for f in given)), trust)


def examples_for(
    trace: Trace, answer: str, feedback_ids: tuple[str, ...], trust: str
) -> list[Example]:
    """`answer` learnt for the trace's input (SFT), and preferred over the answer the trace
    gave (a preference pair, unless they are the same); every text scrubbed."""
    messages, pii = _scrub_messages(trace.messages)
    chosen, c_pii = scrub(answer)
    rejected, r_pii = scrub(trace.completion)
    lineage = dict(request_ids=(trace.request_id,), feedback_ids=feedback_ids)
    sft = Example("sft", messages, chosen, None, trust, pii=dict(pii + c_pii), **lineage)
    if not rejected.strip() or normalise(rejected) == normalise(chosen):
        return [sft]
    pref = Example(
        "preference", messages, chosen, rejected, trust, pii=dict(pii + c_pii + r_pii), **lineage
    )
    return [sft, pref]


def relabel_input(trace: Trace) -> str | None:
    """What the teacher is asked to answer again: the last user message, scrubbed (it leaves
    for the teacher's host)."""
    users = [content for role, content in trace.messages if role == "user"]
    return scrub(users[-1])[0] if users else None
