"""The task spec: everything Distillery needs to know about one narrow task, in one YAML file.

`load_spec(path)` validates a file and names the exact field of every problem. After
`distillery task apply`, file references (golden set, probe set, general text) are replaced by
ArtifactRefs and the student's base model by its content hash, so a stored spec is
self-contained: a service reads it from the artifact store and needs nothing else.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from shared.events.base import ArtifactRef
from shared.llm.hosts import spec_list, target_of

from .sections import Curation, Monitoring, Rollout, Spec, Synthesis, Training

QuantTarget = Literal["int8", "int4", "fp8", "gguf"]


class Example(Spec):
    input: str = Field(min_length=1)
    output: str = Field(min_length=1, description="the right answer; JSON text if a schema is set")
    use_case: str | None = None


class UseCase(Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    weight: float = Field(gt=0)
    description: str = ""


class NegativePolicy(Spec):
    """Examples whose right answer is to decline or escalate, not to guess."""

    share: float = Field(default=0.1, ge=0, lt=1)
    description: str = "requests the task cannot answer from the input"
    # How a correct refusal is recognised in an output, e.g. {"priority": "escalate"}.
    expected: dict[str, Any] = Field(default_factory=dict)


class Thresholds(Spec):
    """The evaluator's gates. A gate fails when its number could not be measured.

    Budgets set to None are not gated (the figure is still reported). Latency always has a
    gate, absolute or relative to the teacher: a student nobody timed must not ship.
    """

    # The quality every gate below is read on: "exact_row" (every field of the answer right),
    # "mean_field_accuracy" (the per-field accuracies averaged over fields) or
    # "<field>_accuracy" (one field alone). Every metric is reported whichever is chosen.
    primary_metric: str = Field(
        default="exact_row", description="exact_row | mean_field_accuracy | <field>_accuracy"
    )
    min_quality_vs_teacher: float = Field(default=0.85, gt=0, le=2)
    # The teacher is the reference the student's bar is drawn from: one that gets fewer than
    # half the golden set right would drag that bar down with it, so the cycle fails with
    # "teacher too weak for this task" instead. Above 0 always: a teacher at 0 never passes.
    min_teacher_quality: float = Field(
        default=0.5, gt=0, le=1, description="the teacher's minimum task accuracy on the golden set"
    )
    max_general_regression: float = Field(default=0.05, ge=0, le=1)
    # Opt-out for a task that has neither a probe set nor general text and accepts not knowing
    # whether the student lost general skills: an unmeasured general_regression then passes,
    # reported as not measured. A measured regression is held to max_general_regression anyway.
    require_general_regression: bool = True
    p95_latency_ms: float | None = Field(
        default=2000.0, gt=0, description="absolute P95 budget of the student; null: not gated"
    )
    max_latency_vs_teacher: float | None = Field(
        default=None, gt=0, description="student P95 / teacher P95 at most this; null: not gated"
    )
    max_cost_vs_teacher: float | None = Field(
        default=None, gt=0, description="student / teacher cost per query; null: not gated"
    )
    max_iterations: int = Field(default=3, ge=1, le=20)
    min_quant_retention: float = Field(default=0.95, gt=0, le=1)

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value in {"exact_row", "mean_field_accuracy"} or (
            value.endswith("_accuracy") and len(value) > len("_accuracy")
        ):
            return value
        raise ValueError(f"{value!r} is not exact_row, mean_field_accuracy or <field>_accuracy")

    @model_validator(mode="after")
    def _latency_is_gated(self) -> Thresholds:
        if self.p95_latency_ms is None and self.max_latency_vs_teacher is None:
            raise ValueError(
                "set p95_latency_ms or max_latency_vs_teacher (or both): latency must be gated"
            )
        return self

    @property
    def primary_field(self) -> str | None:
        """The field a "<field>_accuracy" primary metric names; None for the row-level ones."""
        if self.primary_metric in {"exact_row", "mean_field_accuracy"}:
            return None
        return self.primary_metric.removesuffix("_accuracy")


class Teacher(Spec):
    base_url: str
    model: str = Field(min_length=1)
    # The name of the environment variable holding the key; the key itself never enters a spec.
    api_key_env: str = "DISTILLERY_TEACHER_API_KEY"
    price_per_1k_prompt_tokens: float = Field(default=0.0, ge=0)
    price_per_1k_completion_tokens: float = Field(default=0.0, ge=0)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    timeout_s: float = Field(default=60.0, gt=0)
    temperature: float = Field(default=0.7, ge=0, le=2)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


class Student(Spec):
    # A name given to `distillery models import`; apply resolves it to `base_model_ref`.
    base_model: str = Field(min_length=1)
    base_model_ref: ArtifactRef | None = None
    max_seq_len: int = Field(default=512, ge=32, le=32768)
    # The student's own system prompt. The teacher keeps the full instructions; the student
    # learns them into its weights, so it is trained, evaluated and served with this short one
    # (None: one line naming the task and its output keys, see TaskSpec.student_prompt).
    prompt: str | None = Field(default=None, min_length=1, max_length=4000)


class Residency(Spec):
    allowed_teacher_hosts: list[str] = Field(min_length=1)


class TaskSpec(Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    instructions: str = Field(min_length=1, description="the system prompt of the task")
    output_schema: dict[str, Any] | None = None
    use_cases: list[UseCase] = Field(min_length=1)
    seed_examples: list[Example] = Field(default_factory=list)
    edge_cases: list[str] = Field(default_factory=list)
    negatives: NegativePolicy = NegativePolicy()
    # A path (relative to the spec file) before apply, an ArtifactRef after.
    golden_set: ArtifactRef | str
    probe_set: ArtifactRef | str | None = None
    general_text: ArtifactRef | str | None = None
    thresholds: Thresholds = Thresholds()
    teacher: Teacher
    student: Student
    training: Training = Training()
    synthesis: Synthesis = Synthesis()
    curation: Curation = Curation()
    quantization: list[QuantTarget] = Field(default=["int8"])
    rollout: Rollout = Rollout()
    monitoring: Monitoring = Monitoring()
    residency: Residency

    @property
    def output_keys(self) -> list[str]:
        """The answer's keys in their one order: the schema's `required` list, then the rest.

        Stored specs are canonical JSON with sorted object keys, so `properties` loses the
        author's order; `required` is a list and keeps it. The student prompt, the grammar the
        student decodes under and the training answers all follow this order.
        """
        schema = self.output_schema or {}
        required = [k for k in schema.get("required", []) if isinstance(k, str)]
        rest = sorted(k for k in schema.get("properties", {}) if k not in required)
        return required + rest

    def ordered_answer(self, text: str) -> str:
        """An answer as the student learns and decodes it: keys in `output_keys` order,
        json.dumps' default separators (the grammar allows only those). Not JSON: unchanged."""
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if not isinstance(value, dict):
            return text
        keys = [k for k in self.output_keys if k in value]
        ordered = {k: value[k] for k in keys} | {k: v for k, v in value.items() if k not in keys}
        return json.dumps(ordered, ensure_ascii=False)

    @property
    def student_prompt(self) -> str:
        """What the student sees as its system prompt, in training, evaluation and serving."""
        if self.student.prompt is not None:
            return self.student.prompt
        keys = self.output_keys
        answer = f"one JSON object with keys {', '.join(keys)}" if keys else "the answer"
        return f"Task: {self.name}. Reply with {answer}."

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        names = [u.name for u in self.use_cases]
        if len(set(names)) != len(names):
            raise ValueError("use_cases: names must be unique")
        for i, example in enumerate(self.seed_examples):
            if example.use_case is not None and example.use_case not in names:
                raise ValueError(
                    f"seed_examples.{i}.use_case: {example.use_case!r} is not one of {names}"
                )
        # Caught at apply time too, not only when a service first calls the teacher; the same
        # normalised comparison (case, trailing dot, IDNA, port) the LLM client enforces.
        allowed = self.residency.allowed_teacher_hosts
        if not spec_list(allowed).allows(target_of(self.teacher.base_url)):
            raise ValueError(
                f"teacher.base_url: host {self.teacher.host!r} is outside "
                f"residency.allowed_teacher_hosts {allowed}"
            )
        return self

    @property
    def slices(self) -> list[str]:
        """Use-case names, plus the negatives slice when the policy asks for any."""
        return [u.name for u in self.use_cases] + (["negative"] if self.negatives.share else [])

    def ref(self, field: Literal["golden_set", "probe_set", "general_text"]) -> ArtifactRef:
        value = getattr(self, field)
        if not isinstance(value, ArtifactRef):
            raise ValueError(f"{field} is not resolved to an artifact; apply the spec first")
        return value
