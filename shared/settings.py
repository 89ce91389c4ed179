"""Platform settings. Built by factories at start-up, never at import, so tests pass their own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.llm.hosts import parse_host_list


class PlatformSettings(BaseSettings):
    """What every process shares: where the bus, the database and the artifacts are."""

    model_config = SettingsConfigDict(env_prefix="DISTILLERY_", extra="ignore")

    home: Path = Field(default=Path(".distillery"), description="embedded runtime's data folder")
    nats_url: str = "nats://127.0.0.1:4222"
    # This process's bus identity (shared/bus/auth.py): a service's name, "ops" or "ingest".
    # Unset: connect without a user, which only a server without authorization accepts.
    nats_user: str | None = Field(default=None, min_length=1, max_length=64)
    nats_password: SecretStr | None = None
    database_url: str = Field(
        default="", description="SQLAlchemy async URL; empty means SQLite under `home`"
    )
    stream_replicas: int = Field(default=1, ge=1, le=5)
    max_deliver: int = Field(default=6, ge=1)
    ack_wait_s: float = Field(default=30.0, gt=0)
    consumer_batch_size: int = Field(default=4, ge=1, le=256, description="ignored on SQLite")

    artifact_store: Literal["local", "s3"] = "local"
    artifact_root: Path | None = None
    s3_endpoint: str | None = None
    s3_bucket: str = "distillery"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False

    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="null: JSON unless on a TTY")
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # The operator's data-residency switch: a teacher host must be in this list AND in the task
    # spec's residency.allowed_teacher_hosts (a spec author cannot widen it). Empty: no
    # restriction of the deployment's own, the spec's list alone decides. Entries are `host`
    # (any port) or `host:port`, comma-separated (or a JSON list); see shared/llm/hosts.py.
    allowed_teacher_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_teacher_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> list[str]:
        return parse_host_list(value)

    @model_validator(mode="after")
    def _nats_user_with_password(self) -> PlatformSettings:
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("set DISTILLERY_NATS_USER and DISTILLERY_NATS_PASSWORD together")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'distillery.db').resolve()}"

    @property
    def resolved_artifact_root(self) -> Path:
        return (self.artifact_root or self.home / "artifacts").resolve()
