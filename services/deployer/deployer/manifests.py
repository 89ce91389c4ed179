"""Kubernetes objects for a vLLM model server: a Deployment running `vllm serve` and its Service.

`python -m deployer.manifests` prints the example in deploy/deployer/vllm-student.yaml (a test
keeps the two equal). The weights and adapters come from a volume the quantizer's artifacts
are synced to (`models` PVC, read-only); vLLM never downloads anything (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from .vllm import RUNTIME_LORA_ENV, VllmSpec, command

VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
PORT = 8000


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server"}


def vllm_objects(
    name: str,
    spec: VllmSpec,
    *,
    gpus: int = 1,
    memory: str = "32Gi",
    cpu: str = "4",
    image: str = VLLM_IMAGE,
    models_claim: str = "models",
) -> list[dict[str, Any]]:
    """The Deployment and Service serving `spec` as `name` (one GPU per tensor-parallel rank)."""
    if gpus < spec.tensor_parallel_size:
        raise ValueError(f"{gpus} GPUs for tensor_parallel_size {spec.tensor_parallel_size}")
    args = command(spec, "0.0.0.0", PORT)  # noqa: S104 (the pod's port, behind the Service)
    env = [{"name": k, "value": v} for k, v in {**RUNTIME_LORA_ENV, "HF_HUB_OFFLINE": "1"}.items()]
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        "name": "vllm",
        "image": image,
        "command": args[:2],
        "args": args[2:],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": str(gpus)},
            "limits": {"memory": memory, "nvidia.com/gpu": str(gpus)},
        },
        # Loading weights and compiling graphs takes minutes: no liveness kill meanwhile.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 90},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
        "volumeMounts": [
            {"name": "models", "mountPath": "/models", "readOnly": True},
            # NCCL between tensor-parallel ranks needs more shared memory than the default.
            {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "models",
                            "persistentVolumeClaim": {
                                "claimName": models_claim,
                                "readOnly": True,
                            },
                        },
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels(name)},
        "spec": {
            "selector": labels(name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    return [deployment, service]


def render(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


EXAMPLE = VllmSpec(
    model="/models/toy-triage/merged",
    served_name="toy-triage-student",
    adapters={"toy-triage-candidate": "/models/toy-triage/adapter"},
    max_lora_rank=16,
    draft_model="/models/smollm2-135m",
)
EXAMPLE_HEADER = "# Rendered by `python -m deployer.manifests`; edit the code, not this file.\n"


def example() -> str:
    return EXAMPLE_HEADER + render(vllm_objects("vllm-toy-triage", EXAMPLE))


if __name__ == "__main__":
    sys.stdout.write(example())
