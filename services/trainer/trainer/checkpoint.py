"""Resumable training state in safetensors + JSON: nothing in a checkpoint unpickles.

The HF Trainer checkpoints optimizer, scheduler, scaler and RNG state with `torch.save`
(pickle) and reads them back with `torch.load`. A checkpoint here also travels through the
artifact store and may be resumed on another machine, so `SafeStateMixin` replaces those four
writers and readers: tensors go to safetensors, everything else to JSON, and a checkpoint
folder holding any pickle-format file is refused. The adapter itself is written by peft as
adapter_model.safetensors; `training_args.bin` (a pickle) is not written at all.

A checkpoint counts only once `checkpoint.json` exists: it is written last, so a worker
killed mid-save leaves a folder that resume skips.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

MARKER = "checkpoint.json"
_PICKLES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
_STEP = re.compile(r"^checkpoint-(\d+)$")


class UnsafeCheckpoint(RuntimeError):
    pass


def completed_checkpoints(trial_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every finished checkpoint, oldest first."""
    found = []
    for child in Path(trial_dir).glob("checkpoint-*"):
        match = _STEP.match(child.name)
        if match and (child / MARKER).exists():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(trial_dir: Path) -> Path | None:
    done = completed_checkpoints(trial_dir)
    return done[-1][1] if done else None


def mark_complete(folder: Path, info: dict[str, Any]) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(info, sort_keys=True))
    os.replace(tmp, folder / MARKER)


def refuse_pickles(folder: Path) -> None:
    unsafe = sorted(p.name for p in Path(folder).rglob("*") if p.suffix in _PICKLES)
    if unsafe:
        raise UnsafeCheckpoint(f"{folder}: refusing to resume from pickle files {unsafe}")


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, sort_keys=True))


def optimizer_to_files(state: dict[str, Any], folder: Path, name: str = "optimizer") -> None:
    from safetensors.torch import save_file

    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            slot = f"{index}.{key}"
            if hasattr(value, "detach"):
                tensors[slot] = value.detach().to("cpu").contiguous()
            else:
                scalars[slot] = value
    save_file(tensors, str(folder / f"{name}.safetensors"))
    _json(folder / f"{name}.json", {"param_groups": state["param_groups"], "scalars": scalars})


def optimizer_from_files(folder: Path, name: str = "optimizer") -> dict[str, Any]:
    from safetensors.torch import load_file

    meta = json.loads((folder / f"{name}.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    entries = [*load_file(str(folder / f"{name}.safetensors")).items(), *meta["scalars"].items()]
    for slot, value in entries:
        index, key = slot.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_to_files(folder: Path, suffix: str = "") -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch_cpu": torch.random.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
    }
    if torch.cuda.is_available():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(folder / f"rng_state{suffix}.safetensors"))
    scalars = {"python": [version, list(mt), gauss], "numpy": [kind, pos, has_gauss, cached]}
    _json(folder / f"rng_state{suffix}.json", scalars)


def rng_from_files(folder: Path, suffix: str = "") -> bool:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    path = folder / f"rng_state{suffix}.safetensors"
    if not path.exists():
        return False
    tensors = load_file(str(path))
    scalars = json.loads((folder / f"rng_state{suffix}.json").read_text())
    version, mt, gauss = scalars["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state(
        (kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    torch.random.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    return True


class SafeStateMixin:
    """Mixed into a transformers Trainer (first in the bases) to keep checkpoints pickle-free.

    Overrides private Trainer hooks, pinned to transformers 5.19 by the ml extra; the resume
    test fails loudly if an upgrade changes them.
    """

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(
            output_dir, state_dict=state_dict, safe_serialization=True
        )

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.args.should_save:
            return
        folder = Path(output_dir)
        optimizer_to_files(self.optimizer.state_dict(), folder)
        _json(folder / "scheduler.json", self.lr_scheduler.state_dict())

    def _save_scaler(self, output_dir: str) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and self.args.should_save:
            _json(Path(output_dir) / "scaler.json", scaler.state_dict())

    def _save_rng_state(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        suffix = f"_{self.args.process_index}" if self.args.world_size > 1 else ""
        rng_to_files(Path(output_dir), suffix)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        refuse_pickles(Path(resume_from_checkpoint))
        super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        folder = Path(checkpoint)
        refuse_pickles(folder)
        self.optimizer.load_state_dict(optimizer_from_files(folder))
        self.lr_scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        path = Path(checkpoint or "") / "scaler.json"
        if checkpoint and scaler is not None and path.exists():
            scaler.load_state_dict(json.loads(path.read_text()))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            suffix = f"_{self.args.process_index}" if self.args.world_size > 1 else ""
            rng_from_files(Path(checkpoint), suffix)
