"""Settings come from the environment at call time; logs are JSON and never carry secrets."""

from __future__ import annotations

import json

from shared.logs import configure_logging, get_logger
from shared.settings import PlatformSettings


def test_settings_read_the_environment_when_built(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLERY_HOME", str(tmp_path))
    monkeypatch.setenv("DISTILLERY_S3_SECRET_KEY", "hunter2")
    settings = PlatformSettings()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'distillery.db'}"
    assert settings.resolved_artifact_root == tmp_path / "artifacts"
    assert "hunter2" not in repr(settings)
    assert settings.s3_secret_key.get_secret_value() == "hunter2"


def test_logs_are_json_and_redact_secrets(capsys):
    configure_logging("INFO", json=True)
    settings = PlatformSettings(s3_secret_key="hunter2")
    get_logger("t").info("connecting", password="p4ss", api_key="k3y", key=settings.s3_secret_key)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "connecting"
    assert line["password"] == line["api_key"] == line["key"] == "***"
    assert "hunter2" not in json.dumps(line)
