"""The vLLM backend's command line and Kubernetes objects (vLLM itself is never installed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deployer.manifests import EXAMPLE, example, vllm_objects
from deployer.vllm import RUNTIME_LORA_ENV, VllmSpec, command, shell_line
from shared.models.decoding import VLLM_STRUCTURED_OUTPUTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "deployer"


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_command_serves_quantized_weights_with_lora_schema_and_a_draft():
    spec = VllmSpec(
        model="/m/w8a16",
        served_name="triage",
        quantization="compressed-tensors",
        adapters={"b": "/m/b", "a": "/m/a"},
        max_lora_rank=32,
        draft_model="/m/draft",
        num_speculative_tokens=3,
        tensor_parallel_size=2,
        chat_template="/m/template.jinja",
    )
    args = command(spec, "127.0.0.1", 9000)
    assert args[:3] == ["vllm", "serve", "/m/w8a16"]
    assert (flag(args, "--host"), flag(args, "--port")) == ("127.0.0.1", "9000")
    assert flag(args, "--served-model-name") == "triage"
    assert flag(args, "--quantization") == "compressed-tensors"
    assert "--enable-lora" in args and flag(args, "--max-lora-rank") == "32"
    i = args.index("--lora-modules")
    assert args[i + 1 : i + 3] == ["a=/m/a", "b=/m/b"]
    assert json.loads(flag(args, "--structured-outputs-config")) == VLLM_STRUCTURED_OUTPUTS
    assert json.loads(flag(args, "--speculative-config")) == {
        "model": "/m/draft",
        "num_speculative_tokens": 3,
    }
    assert flag(args, "--tensor-parallel-size") == "2"
    assert flag(args, "--chat-template") == "/m/template.jinja"
    assert flag(args, "--generation-config") == "vllm"


def test_command_leaves_out_what_is_not_asked_for():
    args = command(VllmSpec(model="/m", served_name="s", max_loras=0))
    for absent in ["--quantization", "--enable-lora", "--lora-modules", "--speculative-config"]:
        assert absent not in args
    assert "--structured-outputs-config" in args  # structured outputs always, as evaluated


def test_shell_line_allows_runtime_adapters():
    line = shell_line(VllmSpec(model="/m", served_name="s"))
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /m ")
    assert RUNTIME_LORA_ENV == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_deployment_reserves_gpus_mounts_models_and_probes_health():
    deployment, service = vllm_objects(
        "vllm-x", VllmSpec(model="/models/x", served_name="x"), gpus=2
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == command(
        VllmSpec(model="/models/x", served_name="x"), "0.0.0.0", 8000
    )
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["HF_HUB_OFFLINE"] == "1"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    volumes = {v["name"] for v in pod["volumes"]}
    assert volumes == set(mounts)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        vllm_objects("v", VllmSpec(model="/m", served_name="s", tensor_parallel_size=4), gpus=2)


def test_the_rendered_example_is_current_and_listed():
    assert (DEPLOY / "vllm-student.yaml").read_text() == example(), (
        "run: python -m deployer.manifests > deploy/deployer/vllm-student.yaml"
    )
    assert EXAMPLE.draft_model and EXAMPLE.adapters
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}


def test_gateway_and_control_plane_run_the_deployers_entrypoints():
    docs = [
        d
        for p in ("gateway.yaml", "deployer.yaml")
        for d in yaml.safe_load_all((DEPLOY / p).read_text())
    ]
    commands = {
        d["metadata"]["name"]: " ".join(d["spec"]["template"]["spec"]["containers"][0]["args"])
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert "deployer.gateway_main:create_app --factory" in commands["gateway"]
    assert "deployer.main:create_app" in commands["deployer"]
