"""The routing table the deployments call for (pure): teacher until a student is full."""

from __future__ import annotations

from uuid import uuid4

from deployer.repository import Deployment
from deployer.rollout import Rollout
from deployer.routing import desired_routes
from shared.events.base import ArtifactRef
from shared.tasks import parse_spec
from tests.fixtures.teacher_server import toy_spec

SPEC = parse_spec(toy_spec("http://127.0.0.1:9/v1"))
SPEC_REF = ArtifactRef(uri="file:///spec", sha256="5" * 64, size_bytes=1)


def deployment(stage: str, sha: str, served: bool = True, share: float = 0.0) -> Deployment:
    return Deployment(
        deployment_id=uuid4(), cycle_id=None, task_name="toy-triage", task_spec=SPEC_REF,
        candidate=ArtifactRef(uri=f"file:///{sha}", sha256=sha * 64, size_bytes=1),
        candidate_kind="llama.cpp", rollout=Rollout(stage), share=share, revision=1,
        engine="llama.cpp" if served else None,
        base_url=f"http://127.0.0.1:1{sha}/v1" if served else None,
        served_model=f"m-{sha}" if served else None,
    )  # fmt: skip


def routes(*deployments: Deployment):
    return desired_routes(list(deployments), {SPEC_REF.sha256: SPEC})["toy-triage"]


def test_the_teacher_is_live_and_a_served_candidate_shadows():
    route = routes(deployment("shadow", "a"))
    assert route.live.kind == "teacher" and route.live.base_url == SPEC.teacher.base_url
    assert route.live.api_key_env == SPEC.teacher.api_key_env
    assert route.candidate.model == "m-a" and route.candidate.engine == "llama.cpp"
    assert (route.stage, route.share) == ("shadow", 0.0)


def test_a_candidate_without_a_server_gets_no_traffic():
    route = routes(deployment("ab", "a", served=False, share=0.1))
    assert route.candidate is None and route.stage is None


def test_a_full_student_is_live_and_the_next_candidate_rolls_out_beside_it():
    full, candidate = deployment("full", "a"), deployment("ab", "b", share=0.5)
    route = routes(full, candidate)
    assert route.live.kind == "student" and route.live.version == "a" * 64
    assert route.live.deployment_id == full.deployment_id
    assert (route.candidate.version, route.stage, route.share) == ("b" * 64, "ab", 0.5)
    assert routes(deployment("full", "a")).candidate is None
    older, newer = deployment("full", "a"), deployment("full", "c")
    assert routes(older, newer).live.version == "c" * 64
