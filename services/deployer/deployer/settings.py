"""Deployer settings (env prefix DEPLOYER_); built at start-up by main.create_app and by the
gateway's factory, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

NAME = "deployer"


class DeployerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEPLOYER_", extra="ignore")

    # --- the gateway (data plane) ---
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="a request body above this is refused with 413 before it is parsed",
    )
    upstream_timeout_s: float = Field(
        default=60.0, gt=0, description="one upstream call, connect to last byte; then 504"
    )
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    shadows_per_server: int = Field(
        default=4,
        ge=1,
        description="shadow copies in flight to one candidate server; more are skipped and "
        "counted (distillery_gateway_shadow_skipped_total), not queued behind it",
    )
    max_upstream_connections: int = Field(default=256, ge=1)
    trace_buffer: int = Field(
        default=10_000,
        ge=1,
        description="traffic.logged events waiting for the bus; beyond it they are dropped and "
        "counted (distillery_gateway_traces_dropped_total), never waited for",
    )
    trace_publish_timeout_s: float = Field(default=2.0, gt=0)
    requests_per_minute: int = Field(
        default=600, ge=1, description="a key's default request budget (its own row may differ)"
    )
    burst: int | None = Field(
        default=None, ge=1, description="requests a key may send at once; null: a second's worth"
    )
    rate_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="the wait for the shared rate count (NATS KV); past it a request is admitted "
        "on this replica's own bucket and counted (distillery_gateway_rate_unshared_total)",
    )
    key_refresh_s: float = Field(
        default=1.0, gt=0, description="how often the gateway re-reads keys (revocations)"
    )

    # --- the control plane ---
    work_dir: Path | None = Field(
        default=None, description="fetched models and server logs; null: <home>/deployer"
    )
    control_interval_s: float = Field(
        default=1.0, gt=0, description="how often servers and routes are reconciled"
    )
    llama_n_ctx: int = Field(default=2048, ge=128)
    llama_threads: int | None = Field(default=None, ge=1, description="null: llama.cpp's own")
    vllm_command: str = Field(
        default="vllm",
        min_length=1,
        description="how vLLM's CLI is started here, shell-split ('vllm' from the gpu extra); "
        "`serve MODEL ...` is appended",
    )
    vllm_max_model_len: int = Field(default=4096, ge=128)
    vllm_gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    vllm_start_timeout_s: float = Field(
        default=900.0, gt=0, description="a vLLM server loads and compiles before it answers"
    )
    server_start_attempts: int = Field(
        default=3,
        ge=1,
        description="a candidate's server that fails to start this many passes in a row is "
        "rolled back with the error, instead of being restarted for ever",
    )
