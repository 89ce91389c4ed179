"""The infrastructure manifests: compose.yaml, deploy/base (kustomize) and the NATS accounts.

Nothing is started: the files are parsed and their structure checked. Where a real tool is
on the machine (nats-server, kubectl) it is asked too, and the test is skipped without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.bus.audit import AUDITOR
from shared.bus.audit import DURABLE as AUDIT_DURABLE
from shared.bus.auth import bucket_grants, deploy_conf, deploy_users, password_variable
from shared.events import CATALOG
from shared.events.catalog import IDENTITIES
from shared.events.values import KV_BUCKETS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
NATS_AUTH = BASE / "nats-auth.conf"

SECRET_NAME = "distillery-secrets"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")
URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://([^:/@]+):(.+)@[^@]+$")


# ---------------------------------------------------------------- loading


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service["restart"]) == "no"


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


@cache
def resources() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc)
    return tuple(docs)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def workloads() -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def containers(workload: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def all_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for workload in workloads():
        for container in containers(workload):
            yield (
                f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}",
                container,
            )


@cache
def configmaps() -> dict[str, dict[str, str]]:
    """Every ConfigMap the kustomization produces, by its name before the hash suffix."""
    maps = {doc["metadata"]["name"]: dict(doc.get("data") or {}) for doc in of_kind("ConfigMap")}
    for generator in kustomization().get("configMapGenerator", []):
        data: dict[str, str] = {}
        for literal in generator.get("literals", []):
            key, value = literal.split("=", 1)
            data[key] = value
        for entry in generator.get("files", []):
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = (BASE / path).read_text()
        maps[generator["name"]] = data
    return maps


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


# ---------------------------------------------------------------- compose.yaml


def test_compose_has_the_platform_services():
    assert {"nats", "postgres", "minio", "migrate", "prometheus", "grafana", "vllm"} <= set(
        services()
    )


def test_every_long_running_compose_service_has_a_healthcheck():
    for name, service in services().items():
        # Compose defaults to restart "no"; saying it tells a one-shot from a forgotten policy.
        assert "restart" in service, f'{name}: declare restart ("no" for a one-shot)'
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check.get("test"), f"{name} runs for good but has no healthcheck"
        assert check["test"] != ["NONE"], f"{name}: healthcheck is NONE"


def test_compose_dependencies_wait_for_health_or_completion():
    for name, service in services().items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, rule in depends.items():
            assert target in services(), f"{name} depends on unknown {target}"
            wanted = (
                "service_completed_successfully"
                if is_one_shot(services()[target])
                else "service_healthy"
            )
            assert rule.get("condition") == wanted, f"{name} -> {target}: {rule}"


def test_migrate_runs_alembic_once_postgres_is_healthy():
    migrate = services()["migrate"]
    assert migrate["build"] in (".", {"context": "."})
    assert migrate["command"] in (["alembic", "upgrade", "head"], "alembic upgrade head")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert environment(migrate)["DISTILLERY_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_shared_environment_anchor_is_complete_and_used():
    env = compose()["x-distillery-env"]
    assert env["DISTILLERY_NATS_URL"] == "nats://nats:4222"
    assert env["DISTILLERY_ARTIFACT_STORE"] == "s3"
    assert env["DISTILLERY_S3_ENDPOINT"] == "minio:9000"
    assert env["DISTILLERY_S3_BUCKET"] == "distillery"
    assert re.fullmatch(
        r"postgresql\+asyncpg://postgres:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432/distillery",
        env["DISTILLERY_DATABASE_URL"],
    )
    for key in ("DISTILLERY_S3_ACCESS_KEY", "DISTILLERY_S3_SECRET_KEY"):
        assert INTERPOLATION.match(env[key]), key
    # The anchor is referenced, not copied: later services must stay in step with it.
    assert re.search(r"^\s+environment: \*distillery-env\s*$", COMPOSE.read_text(), re.M)


def test_compose_has_no_literal_secrets():
    envs = {"x-distillery-env": {k: str(v) for k, v in compose()["x-distillery-env"].items()}}
    envs |= {name: environment(service) for name, service in services().items()}
    for owner, env in envs.items():
        for key, value in env.items():
            if SECRETISH.search(key):
                assert INTERPOLATION.match(value), f"{owner}.{key} is a literal, not ${{VAR}}"
            userinfo = URL_USERINFO.match(value)
            if userinfo:
                password = userinfo.group(2)
                assert INTERPOLATION.match(password), f"{owner}.{key} has a literal password"


def test_required_secrets_fail_fast_when_unset():
    # `${VAR:?message}`: compose refuses to start instead of running with an empty password.
    text = COMPOSE.read_text()
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert re.search(r"\$\{" + var + r":\?[^}]+\}", text), var


def test_compose_images_are_pinned():
    for name, service in services().items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"


def test_nats_compose_service_runs_jetstream_and_checks_it():
    nats = services()["nats"]
    assert nats["image"].startswith("nats:2.11")
    assert nats["command"][:5] == ["-js", "-sd", "/data", "-m", "8222"]
    assert any(str(volume).endswith(":/data") for volume in nats["volumes"])
    test = " ".join(nats["healthcheck"]["test"])
    assert "wget" in test
    assert "http://localhost:8222/healthz?js-enabled-only=true" in test


def test_postgres_and_minio_compose_healthchecks():
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    minio = services()["minio"]
    assert minio["command"][:4] == ["server", "/data", "--console-address", ":9001"]
    test = " ".join(minio["healthcheck"]["test"])
    assert "mc ready local" in test or "/minio/health/" in test


def needs_gpu(service: dict[str, Any]) -> bool:
    devices = (
        (service.get("deploy") or {})
        .get("resources", {})
        .get("reservations", {})
        .get("devices", [])
    )
    return (
        any("gpu" in device.get("capabilities", []) for device in devices)
        or "gpus" in service
        or service.get("runtime") == "nvidia"
    )


def test_only_the_gpu_profile_needs_a_gpu():
    for name, service in services().items():
        if needs_gpu(service):
            assert "gpu" in service.get("profiles", []), f"{name} needs a GPU outside the profile"
    default = [name for name, service in services().items() if not service.get("profiles")]
    assert default, "nothing runs without a profile"
    assert not [name for name in default if needs_gpu(services()[name])]
    assert services()["vllm"].get("profiles") == ["gpu"]


def test_vllm_serves_the_student_with_lora_and_reserves_a_gpu():
    vllm = services()["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert needs_gpu(vllm)
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any(device.get("driver") == "nvidia" for device in devices)
    command = vllm["command"]
    assert "--enable-lora" in command
    assert "/models/student" in command
    assert any(str(volume).split(":")[1] == "/models" for volume in vllm["volumes"])
    assert "/health" in " ".join(vllm["healthcheck"]["test"])


def test_compose_bind_mounts_exist():
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_and_grafana_configs():
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert "prometheus" in jobs
    grafana = yaml.safe_load((DEPLOY / "grafana" / "datasources.yaml").read_text())
    (source,) = grafana["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services()


def test_dockerfile_builds_a_slim_non_root_image_without_extras():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    installs = [line for line in lines if "pip install" in line]
    assert installs and all(re.search(r"pip install \.(\s|$)", line) for line in installs)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


# ---------------------------------------------------------------- deploy/: every file


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_under_deploy_parses(path: Path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, f"{path} is empty"


def test_kustomization_lists_files_that_exist_and_nothing_is_left_out():
    k = kustomization()
    listed = list(k["resources"])
    for generator in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        listed += [entry.rpartition("=")[2] for entry in generator.get("files", [])]
        listed += generator.get("envs", [])
    for name in listed:
        assert (BASE / name).is_file(), f"kustomization lists missing {name}"
    manifests = {p.name for p in BASE.glob("*.y*ml")} - {"kustomization.yaml"}
    orphans = manifests - set(k["resources"])
    assert not orphans, f"manifests that `kubectl apply -k` would skip: {orphans}"


def test_every_resource_is_kubernetes_shaped():
    for doc in resources():
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert doc["metadata"].get("name"), doc
    assert kustomization()["namespace"] == named("Namespace", "distillery")["metadata"]["name"]


def test_workload_selectors_match_their_pod_labels():
    for workload in workloads():
        if workload["kind"] in {"Job", "CronJob"}:
            continue
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_services_select_pods_that_exist():
    pod_labels = [
        workload["spec"]["template"]["metadata"].get("labels", {}) for workload in workloads()
    ]
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service


def test_every_container_has_requests_and_a_memory_limit():
    for where, container in all_containers():
        resources_ = container.get("resources") or {}
        requests = resources_.get("requests") or {}
        limits = resources_.get("limits") or {}
        assert {"cpu", "memory"} <= requests.keys(), f"{where}: requests {requests}"
        assert "memory" in limits, f"{where}: no memory limit"


def test_every_long_running_container_has_probes():
    for workload in workloads():
        if workload["kind"] in {"Job", "CronJob"}:
            continue
        for container in containers(workload, init=False):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert container.get("livenessProbe"), f"{where}: no livenessProbe"
            assert container.get("readinessProbe"), f"{where}: no readinessProbe"
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(kind) or {}
                if "httpGet" in probe:
                    container_port(container, probe["httpGet"]["port"])


def test_every_container_drops_privileges():
    for where, container in all_containers():
        context = container.get("securityContext") or {}
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
    for workload in workloads():
        assert pod_spec(workload).get("securityContext", {}).get("runAsNonRoot") is True


def test_images_in_deploy_are_pinned():
    for where, container in all_containers():
        image = container["image"]
        if image == "distillery":  # set by the kustomization's `images:`
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{where}: {image}"
    (distillery,) = [i for i in kustomization()["images"] if i["name"] == "distillery"]
    assert distillery.get("newTag") not in (None, "latest")


# ---------------------------------------------------------------- deploy/: secrets


def test_no_secret_values_in_deploy():
    assert not of_kind("Secret"), "Secrets are created out of band, never committed"
    assert not kustomization().get("secretGenerator"), "no secretGenerator with literals"
    for path in DEPLOY.rglob("*"):
        if path.suffix in {".yaml", ".yml"}:
            for doc in yaml.safe_load_all(path.read_text()):
                assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


def test_every_secret_reference_is_distillery_secrets():
    references = 0
    for doc in resources():
        for key, value in walk(doc):
            if key in {"secretKeyRef", "secretRef"}:
                references += 1
                assert value["name"] == SECRET_NAME, value
            if key == "secret" and isinstance(value, dict):
                references += 1
                assert value["secretName"] == SECRET_NAME, value
    assert references, "nothing reads distillery-secrets"


def test_secretish_env_comes_from_the_secret():
    for where, container in all_containers():
        for env in container.get("env", []):
            if SECRETISH.search(env["name"]) or env["name"].endswith("DATABASE_URL"):
                assert "value" not in env, f"{where}: {env['name']} is a literal"
                assert env["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME


def test_configmap_references_resolve():
    names = set(configmaps())
    for doc in resources():
        for key, value in walk(doc):
            if key in {"configMapKeyRef", "configMapRef"}:
                assert value["name"] in names, value
            if key == "configMap" and isinstance(value, dict):
                assert value["name"] in names, value


def test_distillery_config():
    config = configmaps()["distillery-config"]
    assert config["DISTILLERY_NATS_URL"] == "nats://nats:4222"
    assert config["DISTILLERY_ARTIFACT_STORE"] == "s3"
    assert config["DISTILLERY_S3_ENDPOINT"] == "minio:9000"
    assert config["DISTILLERY_S3_BUCKET"] == "distillery"
    assert config["DISTILLERY_STREAM_REPLICAS"] == "3"
    replicas = int(config["DISTILLERY_STREAM_REPLICAS"])
    assert replicas <= named("StatefulSet", "nats")["spec"]["replicas"]
    assert not any(SECRETISH.search(key) for key in config)


# ---------------------------------------------------------------- deploy/: the parts


def nats_conf() -> str:
    nats = named("StatefulSet", "nats")
    volumes = {v["name"]: v for v in pod_spec(nats)["volumes"]}
    (container,) = containers(nats, init=False)
    args = container.get("args", []) + container.get("command", [])
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    configmap = volumes[mount["name"]]["configMap"]["name"]
    return configmaps()[configmap][config_path.name]


def test_nats_statefulset_is_a_three_node_jetstream_cluster():
    nats = named("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    headless = named("Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"].get("publishNotReadyAddresses") is True
    claims = {claim["metadata"]["name"] for claim in nats["spec"]["volumeClaimTemplates"]}
    (container,) = containers(nats, init=False)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claims & mounts.keys(), "JetStream data is not on a persistent volume"

    conf = nats_conf()
    jetstream = re.search(r"^jetstream\s*\{(.*?)^\}", conf, re.S | re.M)
    assert jetstream, "jetstream is not enabled in nats.conf"
    store_dir = re.search(r"store_dir:\s*(\S+)", jetstream.group(1)).group(1)
    assert any(store_dir.startswith(mounts[claim]) for claim in claims & mounts.keys())
    routes = set(re.findall(r"nats://([\w.-]+):6222", conf))
    service = headless["metadata"]["name"]
    assert routes == {f"nats-{i}.{service}" for i in range(3)}
    assert re.search(r"^server_name:\s*\$POD_NAME", conf, re.M)


def test_nats_probes_use_the_monitoring_port():
    nats = named("StatefulSet", "nats")
    (container,) = containers(nats, init=False)
    for kind in ("livenessProbe", "readinessProbe"):
        probe = container[kind]["httpGet"]
        assert probe["path"] == "/healthz?js-enabled-only=true", kind
        assert container_port(container, probe["port"]) == 8222, kind
    assert re.search(r"^http:\s*\S*8222", nats_conf(), re.M)


def test_nats_client_service_and_disruption_budget():
    client = named("Service", "nats")
    assert {port["port"] for port in client["spec"]["ports"]} == {4222}
    budget = named("PodDisruptionBudget", "nats")
    assert budget["spec"]["maxUnavailable"] == 1


def test_postgres_statefulset():
    postgres = named("StatefulSet", "postgres")
    assert postgres["spec"]["replicas"] == 1
    assert postgres["spec"]["volumeClaimTemplates"]
    (container,) = containers(postgres, init=False)
    assert container["image"].startswith("postgres:17")
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert named("Service", "postgres")["spec"]["ports"][0]["port"] == 5432


def test_minio_statefulset():
    minio = named("StatefulSet", "minio")
    assert minio["spec"]["volumeClaimTemplates"]
    (container,) = containers(minio, init=False)
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert 9000 in {port["port"] for port in named("Service", "minio")["spec"]["ports"]}


def test_migration_job():
    job = named("Job", "migrate")
    assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
    (container,) = containers(job, init=False)
    assert container["image"] == "distillery"
    assert container["command"] == ["alembic", "upgrade", "head"]
    (url,) = [env for env in container["env"] if env["name"] == "DISTILLERY_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME


def test_minio_setup_script_is_shared_by_compose_and_the_job():
    script = BASE / "minio-setup.sh"
    assert "minio-setup.sh" in configmaps()["minio-setup"]
    assert any("deploy/base/minio-setup.sh" in str(v) for v in services()["minio-init"]["volumes"])
    assert shutil.which("sh")
    subprocess.run(["sh", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], check=True, capture_output=True, text=True
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert {doc["metadata"].get("namespace", "distillery") for doc in docs} == {"distillery"}
    images = {c["image"] for doc in docs if doc["kind"] == "Job" for c in containers(doc)}
    assert "distillery" not in images, "the distillery image tag was not applied"


# ---------------------------------------------------------------- NATS users


@cache
def nats_users() -> dict[str, dict[str, Any]]:
    """Loose parse of nats-auth.conf: one block per `user:`, its password and allow lists."""
    text = "\n".join(
        line for line in NATS_AUTH.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    starts = list(re.finditer(r'user:\s*"([^"]+)"', text))
    users = {}
    for here, after in zip(starts, [*starts[1:], None], strict=True):
        block = text[here.end() : after.start() if after else len(text)]

        def allowed(kind: str, block: str = block) -> set[str]:
            match = re.search(kind + r":\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
            return set(re.findall(r'"([^"]+)"', match.group(1))) if match else set()

        users[here.group(1)] = {
            "password": re.search(r"password:\s*(\S+)", block).group(1),
            "publish": allowed("publish"),
            "subscribe": allowed("subscribe"),
        }
    return users


def test_nats_auth_conf_is_generated_from_the_event_catalog():
    assert NATS_AUTH.read_text() == deploy_conf(), (
        "deploy/base/nats-auth.conf is stale; run: python -m shared.bus.auth > "
        "deploy/base/nats-auth.conf"
    )
    # The catalog's identities, plus the stray auditor: a kernel user no event names.
    assert set(nats_users()) == IDENTITIES | {AUDITOR} == deploy_users()


@pytest.mark.parametrize("user", sorted(IDENTITIES))
def test_each_user_publishes_exactly_its_events_and_its_own_consumers(user: str):
    publish = nats_users()[user]["publish"]
    events = {subject for subject in publish if subject.startswith("distillery.")}
    assert events == {s for s, cls in CATALOG.items() if user in cls.producers}
    # A key-value bucket's grants are scoped to that bucket's own stream (shared/bus/auth.py),
    # given only to its users; they may delete their own watchers' ephemeral consumers there.
    buckets = {g for b, who in KV_BUCKETS.items() if user in who for g in bucket_grants(b)}
    assert buckets <= publish
    for grant in buckets:
        bucket = next(b for b in KV_BUCKETS if f"KV_{b}" in grant or f"$KV.{b}." in grant)
        assert "STREAM.DELETE" not in grant and "PURGE" not in grant, grant
        assert "CONSUMER.DELETE" not in grant or f"CONSUMER.DELETE.KV_{bucket}." in grant
    jetstream = publish - events - buckets
    own = f".DISTILLERY.{user}--"
    for grant in jetstream:
        assert not any(verb in grant for verb in ("DELETE", "PURGE", "$JS.API.>")), grant
        assert grant.startswith(("$JS.API.STREAM.", "$JS.API.CONSUMER.", "$JS.ACK.")), grant
        if not grant.startswith("$JS.API.STREAM."):
            assert own in grant, f"{user} may use another's consumer: {grant}"
    updates = "$JS.API.STREAM.UPDATE.DISTILLERY" in jetstream
    assert updates == (user == "ops"), "only ops may change the stream"


@pytest.mark.parametrize("user", sorted(IDENTITIES))
def test_each_user_subscribes_to_what_it_consumes_and_its_inbox(user: str):
    subscribe = nats_users()[user]["subscribe"]
    events = {subject for subject in subscribe if not subject.startswith("_INBOX")}
    assert events == {s for s, cls in CATALOG.items() if user in cls.consumers}
    assert subscribe - events <= {"_INBOX.>", f"_INBOX_{user}.>"}
    if user == "ingest":
        assert subscribe == {"_INBOX_ingest.>"}, "outside apps read nothing but their acks"


def test_the_auditor_reads_only_through_its_consumer_and_publishes_only_dead_letters():
    auditor = nats_users()[AUDITOR]
    events = {subject for subject in auditor["publish"] if subject.startswith("distillery.")}
    assert events == {"distillery.deadletter.recorded.v1"}
    for grant in auditor["publish"] - events:
        assert not any(verb in grant for verb in ("DELETE", "PURGE", "UPDATE", "$JS.API.>"))
        if not grant.startswith("$JS.API.STREAM."):
            assert f".DISTILLERY.{AUDIT_DURABLE}" in grant, grant
    # No event subject: it reads pulled batches through its own inbox, never a live feed.
    assert auditor["subscribe"] == {f"_INBOX_{AUDITOR}.>"}


def test_passwords_come_from_the_environment():
    for user, grants in nats_users().items():
        assert grants["password"] == "$" + password_variable(user), user


def test_every_hand_off_in_the_loop_has_a_consumer():
    consumed = {subject for subject, cls in CATALOG.items() if cls.consumers}
    # Terminal or informational events are read from the database by operators.
    informational = {
        "distillery.training.progressed.v1",
        "distillery.deadletter.recorded.v1",
        "distillery.drift.detected.v1",
        # Its artifact travels on in the cycle.requested it is committed with.
        "distillery.feedback.dataset.published.v1",
    }
    assert consumed == set(CATALOG) - informational


def test_the_nats_statefulset_includes_the_users_with_hashed_passwords():
    assert re.search(r"^include \./nats-auth\.conf\s*$", nats_conf(), re.M)
    assert "nats-auth.conf" in configmaps()["nats-config"]
    (container,) = containers(named("StatefulSet", "nats"), init=False)
    env = {e["name"]: e for e in container["env"]}
    for identity in deploy_users():
        variable = password_variable(identity)
        hashed = variable.replace("NATS_PASSWORD_", "NATS_BCRYPT_")
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": SECRET_NAME, "key": hashed}, variable


def test_compose_nats_runs_with_the_users_and_each_service_connects_as_itself():
    nats = services()["nats"]
    command = nats["command"]
    conf = command[command.index("-c") + 1]
    assert f"./deploy/base/nats-auth.conf:{conf}:ro" in nats["volumes"]
    text = COMPOSE.read_text()
    for identity in deploy_users():
        var = password_variable(identity)
        assert environment(nats)[var].startswith("${" + var + ":?"), var
        assert re.search(r"\$\{" + var + r":\?[^}]+\}", text), var
    assert not {"DISTILLERY_NATS_USER", "DISTILLERY_NATS_PASSWORD"} & set(
        compose()["x-distillery-env"]
    ), "the shared anchor must not carry one identity's credentials"
    served = {
        name: service
        for name, service in services().items()
        if "shared.runtime.serve" in " ".join(map(str, service.get("command", [])))
    }
    assert served, "no Distillery services in compose.yaml"
    for name, service in served.items():
        env = environment(service)
        assert env["DISTILLERY_NATS_USER"] == name and name in deploy_users(), name
        var = password_variable(name)
        assert env["DISTILLERY_NATS_PASSWORD"].startswith("${" + var + ":?"), name


def served_apps() -> dict[str, str]:
    """compose service name -> the `create_app` it serves."""
    return {
        name: str(service["command"][-1])
        for name, service in services().items()
        if "shared.runtime.serve" in " ".join(map(str, service.get("command", [])))
    }


def test_the_stray_auditor_runs_in_compose_and_in_kubernetes_as_its_own_user():
    app = "shared.runtime.auditor:create_app"
    assert served_apps()[AUDITOR] == app
    compose_auditor = services()[AUDITOR]
    assert compose_auditor["depends_on"]["nats"]["condition"] == "service_healthy"
    assert compose_auditor["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    workload = named("Deployment", AUDITOR)
    (container,) = containers(workload, init=False)
    assert container["command"][-1] == app and "shared.runtime.serve" in container["command"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DISTILLERY_NATS_USER"]["value"] == AUDITOR
    assert env["DISTILLERY_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET_NAME,
        "key": password_variable(AUDITOR),
    }
    # Its records go to the outbox: it must reach the same database as the services.
    assert env["DISTILLERY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME
    assert {"configMapRef": {"name": "distillery-config"}} in container["envFrom"]
    metrics = container_port(container, "metrics")
    assert env["DISTILLERY_METRICS_PORT"]["value"] == str(metrics)


def nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


@pytest.mark.skipif(nats_server() is None, reason="nats-server not installed")
@pytest.mark.parametrize("password", ["$2a$11$" + "a" * 53, "p0123456789abcdef"])
def test_nats_server_accepts_the_config_with_its_users(tmp_path: Path, password: str):
    # A bcrypt hash (deploy/) or a plaintext password (compose) read from the environment.
    conf = nats_conf().replace("/data/jetstream", str(tmp_path / "js"))
    conf = conf.replace("/var/run/nats/", f"{tmp_path}/")
    (tmp_path / "nats.conf").write_text(conf)
    (tmp_path / "nats-auth.conf").write_text(NATS_AUTH.read_text())
    env = {"POD_NAME": "nats-0", "PATH": os.environ.get("PATH", "")}
    env |= {password_variable(identity): password for identity in deploy_users()}
    result = subprocess.run(
        [nats_server(), "-t", "-c", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
