"""`distillery models import --dir` / `models list` on a fresh home: content-addressed,
registered once, and a folder that is not a safetensors model is refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator

import pytest
import structlog
from typer.testing import CliRunner

from shared.artifacts import LocalArtifactStore
from shared.cli.main import app
from shared.db import Database
from shared.models import read_manifest
from shared.tasks.registry import resolve_base_model

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _keep_logging_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def registered(home, name: str):
    db = Database(f"sqlite+aiosqlite:///{home / 'distillery.db'}")
    try:
        return await resolve_base_model(db, name)
    finally:
        await db.dispose()


def cli(home, *args: str):
    isolated = {k: None for k in os.environ if k.startswith("DISTILLERY_")}
    return runner.invoke(app, [*args, "--home", str(home)], env=isolated)


def test_import_a_safetensors_folder_twice_registers_it_once(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    first = cli(home, "models", "import", "--dir", str(tiny_model_dir), "--name", "tiny-llama")
    assert first.exit_code == 0, first.output
    name, ref = first.stdout.split()
    assert name == "tiny-llama" and ref.startswith("sha256:")
    assert "imported: tiny-llama" in first.stderr

    again = cli(home, "models", "import", "--dir", str(tiny_model_dir), "--name", "tiny-llama")
    assert again.exit_code == 0, again.output
    assert again.stdout.split() == [name, ref]
    assert "already imported" in again.stderr

    listed = cli(home, "models", "list")
    assert listed.exit_code == 0
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["tiny-llama", ref[: len("sha256:") + 12]]
    ]

    row = asyncio.run(registered(home, "tiny-llama"))
    manifest = read_manifest(LocalArtifactStore(home / "artifacts"), row.ref())
    assert f"sha256:{row.sha256}" == ref
    assert manifest["kind"] == "model" and "model.safetensors" in manifest["files"]


def test_a_folder_without_config_or_with_pickles_is_refused(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").unlink()
    result = cli(tmp_path / "home", "models", "import", "--dir", str(broken))
    assert result.exit_code == 1
    assert "missing config.json" in result.stderr

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    result = cli(tmp_path / "home", "models", "import", "--dir", str(pickled))
    assert result.exit_code == 1
    assert "pytorch_model.bin" in result.stderr
