"""The heavy part, in a child process (`StageRun.process`): merge, convert, quantize, measure.

`quantize(job, progress)`: merge the adapter and verify it; run the merged model on
transformers; convert it to GGUF F16 and quantize the other GGUF schemes from that file; run
each on llama.cpp; where there is a GPU, make the vLLM-native variants with llm-compressor
(GPTQ calibrated on a sample of the adapter's train split) and run each on vLLM, else report
each skipped with the reason. Every model answers the same golden rows greedily under the same
schema: transformers and llama.cpp in one grammar-masked loop (engines.py), vLLM with its own
structured output from that schema (vllm_engine.py). Bad input (an adapter that does not
load, an architecture llama.cpp cannot convert, a merge that does not match) raises
PermanentError; the stage ends the cycle.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.bus.errors import PermanentError

from . import engines, gpu, ml
from .contract import Measured, PlannedVariant, QuantizeJob, QuantizeResult

Progress = Callable[[dict[str, Any]], None]


def quantize(job: QuantizeJob, progress: Progress) -> QuantizeResult:
    from transformers import AutoTokenizer

    base, out = Path(job.base_dir), Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ggufs = [v for v in job.variants if v.kind == "gguf"]
    if ggufs:
        archs = ml.architectures(base)
        if not set(archs) & ml.supported_architectures(Path(job.converter)):
            raise PermanentError(
                f"unsupported architecture {archs or 'unnamed'}: llama.cpp cannot convert it"
            )
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    prompts = {r.id: _prompt(tokenizer, job.system_prompt, r.prompt_input) for r in job.golden}
    merged = out / "merged"
    shutil.rmtree(merged, ignore_errors=True)
    probes = list(prompts.values())[:4]
    diff = ml.merge(base, Path(job.adapter_dir), merged, probes, job.merge_tolerance)
    progress({"step": "merged", "max_abs_diff": diff})

    runner = _Runner(job, tokenizer, prompts, progress)
    measured = [runner.run("merged", merged, engines.TransformersEngine(merged, job.threads))]
    progress({"step": "evaluated", "variant": "merged"})
    if ggufs:
        f16 = ml.convert_f16(Path(job.converter), merged, out / "model-f16.gguf")
        for plan in ggufs:
            measured.append(_gguf_variant(job, plan, f16, runner))
            progress({"step": "evaluated", "variant": plan.name})
        if not any(p.scheme == "F16" for p in ggufs):
            f16.unlink()  # the source of the others, not a variant of its own here
    measured += [
        _vllm_variant(job, plan, merged, tokenizer, runner)
        for plan in job.variants
        if plan.kind != "gguf"
    ]
    return QuantizeResult(
        merged_dir=str(merged),
        merge_max_abs_diff=diff,
        variants=measured,
        runtime=engines.runtime_info(),
    )


def _gguf_variant(job: QuantizeJob, plan: PlannedVariant, f16: Path, runner: _Runner) -> Measured:
    out = Path(job.out_dir)
    path = f16 if plan.scheme == "F16" else out / f"model-{plan.scheme.lower()}.gguf"
    if plan.scheme != "F16":
        ml.quantize(f16, path, plan.scheme, job.threads)
    try:
        engine = engines.LlamaCppEngine(path, job.threads, job.context)
    except ValueError as exc:  # llama-cpp-python's "failed to load model"
        raise ml.ConversionError(f"{plan.name} does not load in llama.cpp: {exc}") from exc
    return runner.run(plan.name, path, engine)


def _vllm_variant(
    job: QuantizeJob, plan: PlannedVariant, merged: Path, tokenizer: Any, runner: _Runner
) -> Measured:
    reason = gpu.skip_reason()
    recipe = gpu.recipe(plan.scheme)
    texts: list[str] = []
    if reason is None and recipe.needs_calibration:
        if job.calibration_path is None:
            reason = f"skipped: no training rows to calibrate on ({job.calibration_missing})"
        else:
            train = Path(job.calibration_path).read_bytes()
            try:
                texts = gpu.calibration_texts(
                    train, job.system_prompt, tokenizer, rows=job.calibration_rows
                )
            except ValueError as exc:  # an empty or malformed split: this variant only
                reason = f"skipped: the train split cannot calibrate: {exc}"
    if reason is not None:
        return Measured(name=plan.name, status="skipped", reason=reason)
    from . import vllm_engine  # CUDA only: never imported on a CPU machine

    # One GPU variant failing must not cost the variants already measured: it is reported
    # failed with the cause, and the choice is made among the others.
    try:
        dest = gpu.compress(
            merged, Path(job.out_dir) / plan.name, plan.scheme, texts, job.max_seq_len
        )
        engine = vllm_engine.VllmEngine(dest, job.context)
    except Exception as exc:
        return Measured(name=plan.name, status="failed", reason=f"failed: {exc!r}"[:4000])
    try:
        return runner.run_vllm(plan.name, dest, engine)
    except Exception as exc:
        return Measured(name=plan.name, status="failed", reason=f"failed on vLLM: {exc!r}"[:4000])
    finally:
        engine.close()


def _prompt(tokenizer: Any, system: str, text: str) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class _Runner:
    """The golden rows through one engine: every reply, and timings on the timed rows."""

    def __init__(
        self, job: QuantizeJob, tokenizer: Any, prompts: dict[str, str], progress: Progress
    ) -> None:
        self.job, self.tokenizer, self.progress = job, tokenizer, progress
        self.ids = {
            k: tokenizer(p, add_special_tokens=False)["input_ids"] for k, p in prompts.items()
        }
        self._grammars: dict[int, Any] = {}

    def grammar(self, vocab_size: int) -> Any | None:
        if vocab_size not in self._grammars:
            self._grammars[vocab_size] = engines.compile_for(
                self.tokenizer, vocab_size, self.job.output_schema
            )
        return self._grammars[vocab_size]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def run(self, name: str, path: Path, engine: Any) -> Measured:
        """A variant on transformers or llama.cpp: our greedy loop under the xgrammar mask."""
        grammar = self.grammar(engine.vocab_size)
        stops = set(grammar.tokenizer_info.stop_token_ids) if grammar is not None else set()
        stops.add(self.tokenizer.eos_token_id)

        def reply(row_id: str) -> engines.Reply:
            return engines.greedy(
                engine,
                self.ids[row_id],
                grammar=grammar,
                stop_ids=stops,
                max_new_tokens=self.job.max_new_tokens,
                decode=self.decode,
            )

        return self._measure(name, path, reply)

    def run_vllm(self, name: str, path: Path, engine: Any) -> Measured:
        """A variant on vLLM: its own structured output from the same schema (vllm_engine)."""

        def reply(row_id: str) -> engines.Reply:
            return engine.answer(
                self.ids[row_id],
                schema=self.job.output_schema,
                max_new_tokens=self.job.max_new_tokens,
                decode=self.decode,
            )

        return self._measure(name, path, reply)

    def _measure(self, name: str, path: Path, reply: Callable[[str], engines.Reply]) -> Measured:
        if self.job.timed_rows:
            reply(self.job.timed_rows[0])  # warm-up: first-call allocations are not latency
        replies = {}
        for n, row_id in enumerate(self.ids, 1):
            replies[row_id] = reply(row_id)
            if n % 10 == 0 or n == len(self.ids):
                self.progress({"step": "answering", "variant": name, "rows": n})
        timed = [replies[r] for r in self.job.timed_rows]
        size = path.stat().st_size if path.is_file() else _dir_size(path)
        return Measured(
            name=name,
            status="evaluated",
            path=str(path),
            size_bytes=size,
            replies={k: r.text for k, r in replies.items()},
            figures=engines.summary(timed),
        )


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
