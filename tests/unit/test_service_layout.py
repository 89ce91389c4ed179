"""Every service folder has the same files with the same roles (services/README.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
REQUIRED = {
    "main.py",
    "settings.py",
    "handlers.py",
    "service.py",
    "domain.py",
    "repository.py",
    "models.py",
}
HEAVY = {"trainer", "evaluator"}  # their work runs in a child process: worker.py
PACKAGES = sorted(p.name for p in SERVICES.iterdir() if (p / p.name / "__init__.py").exists())


def modules(package: str) -> dict[str, ast.Module]:
    folder = SERVICES / package / package
    return {f.name: ast.parse(f.read_text()) for f in folder.glob("*.py")}


def test_every_service_is_checked():
    assert {"synth_data", "curation", "trainer", "evaluator"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_same_files(package: str):
    present = {f.name for f in (SERVICES / package / package).glob("*.py")}
    missing = REQUIRED - present
    assert not missing, f"{package} lacks {sorted(missing)}"
    assert (SERVICES / package / "README.md").exists()
    if package in HEAVY:
        assert "worker.py" in present


@pytest.mark.parametrize("package", PACKAGES)
def test_name_is_defined_once_in_settings(package: str):
    where = [
        name
        for name, tree in modules(package).items()
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "NAME" for t in node.targets)
    ]
    assert where == ["settings.py"]


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_are_relative_and_never_reach_another_service(package: str):
    for name, tree in modules(package).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
                assert top != package, f"{package}/{name}: absolute import of its own package"
                assert top not in PACKAGES, f"{package}/{name} imports service {top}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in PACKAGES, f"{package}/{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_stages_go_through_the_template(package: str):
    # Subscribing by hand would skip the template's give-up path (cycle.failed on every end).
    handlers = (SERVICES / package / package / "handlers.py").read_text()
    assert "add_stage" in handlers
    for name, tree in modules(package).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "subscribe":
                pytest.fail(f"{package}/{name} subscribes directly")
