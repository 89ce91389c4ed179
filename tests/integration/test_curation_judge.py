"""The optional LLM judge against a tiny scripted OpenAI-compatible server (this module's own):
low grades are rejected, unreadable grades are not held against a row, residency (the spec's
list and the operator's) is enforced before any row leaves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from curation.domain import Row
from curation.judge import TeacherJudge, parse_score
from curation.service import Deps
from curation.settings import CurationSettings
from shared.bus.errors import PermanentError
from shared.db import Database
from shared.events.catalog import CycleFailed, DatasetPublished
from shared.llm import ResidencyError
from shared.tasks import spec_from_json
from shared.tasks.spec import Residency
from tests.integration.test_curation_service import (
    apply_spec,
    deliver,
    deps,
    outbox,
    store,
    synth_event,
    synth_rows,
)


class ScriptedTeacher(BaseHTTPRequestHandler):
    """Grades 1 when the prompt holds BADROW, answers prose for ODDROW, else grades 5."""

    prompts: list[str] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        type(self).prompts.append(prompt)
        if "BADROW" in prompt:
            content = '{"score": 1}'
        elif "ODDROW" in prompt:
            content = "I would rather not grade this."
        else:
            content = '{"score": 5}'
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def teacher_url() -> Iterator[str]:
    ScriptedTeacher.prompts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedTeacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_parse_score():
    assert parse_score('{"score": 5}') == 1.0
    assert parse_score("3") == 0.5
    assert parse_score('Sure! {"score": 2} because') == 0.25
    assert parse_score("no grade here") is None
    assert parse_score('{"score": 9}') is None


async def judged_spec(artifacts, teacher_url: str):
    spec = spec_from_json(await artifacts.get_bytes(await apply_spec(artifacts, judge=True)))
    return spec.model_copy(
        update={"teacher": spec.teacher.model_copy(update={"base_url": teacher_url})}
    )


async def test_judge_rejects_low_grades(sqlite_db: Database, tmp_path: Path, teacher_url: str):
    artifacts = store(tmp_path)
    spec = await judged_spec(artifacts, teacher_url)
    spec_ref = await artifacts.put_bytes(spec.model_dump_json().encode())
    rows = synth_rows(12)
    rows[0]["input"] += " BADROW"
    rows[1]["input"] += " ODDROW"
    event = await synth_event(artifacts, spec_ref, rows)

    assert await deliver(deps(sqlite_db, artifacts), event) == "acked"

    [published] = await outbox(sqlite_db, DatasetPublished)
    manifest = json.loads(await artifacts.get_bytes(published.manifest))
    assert manifest["counts"]["rejected"] == {"judge_low_score": 1}
    assert published.train_examples + published.validation_examples == 11
    assert len(ScriptedTeacher.prompts) == 12
    assert all("Triage the support ticket" in p for p in ScriptedTeacher.prompts)


async def test_judge_refuses_a_teacher_outside_the_residency_list(tmp_path: Path):
    artifacts = store(tmp_path)
    spec = spec_from_json(await artifacts.get_bytes(await apply_spec(artifacts, judge=True)))
    moved = spec.model_copy(update={"residency": Residency(allowed_teacher_hosts=["eu.example"])})
    with pytest.raises(PermanentError, match="residency"):
        TeacherJudge(moved, max_rows=10, operator_hosts=[])
    with pytest.raises(PermanentError, match="JUDGE_MAX_ROWS"):
        TeacherJudge(spec, max_rows=1, operator_hosts=[])([Row("a", "b", False, "i", "o")] * 2)


async def test_judge_refuses_a_teacher_outside_the_operators_list(
    sqlite_db: Database, tmp_path: Path, teacher_url: str
):
    """The spec allows the host; DISTILLERY_ALLOWED_TEACHER_HOSTS does not. The stage gives up
    and ends the cycle before the judge sends a single row."""
    artifacts = store(tmp_path)
    spec = await judged_spec(artifacts, teacher_url)
    assert spec.residency.allowed_teacher_hosts == ["127.0.0.1"]
    with pytest.raises(ResidencyError, match=r"DISTILLERY_ALLOWED_TEACHER_HOSTS \['eu\.example'\]"):
        TeacherJudge(spec, max_rows=10, operator_hosts=["eu.example"])

    spec_ref = await artifacts.put_bytes(spec.model_dump_json().encode())
    event = await synth_event(artifacts, spec_ref, synth_rows(6))
    d = Deps(sqlite_db, artifacts, CurationSettings(), operator_hosts=["eu.example"])

    assert await deliver(d, event) == "dead_lettered_permanent"

    [failed] = await outbox(sqlite_db, CycleFailed)
    assert failed.stage == "curation" and "'127.0.0.1'" in failed.reason
    assert "DISTILLERY_ALLOWED_TEACHER_HOSTS ['eu.example'] does not allow it" in failed.reason
    assert await outbox(sqlite_db, DatasetPublished) == []
    assert ScriptedTeacher.prompts == []
