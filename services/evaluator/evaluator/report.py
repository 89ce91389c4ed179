"""The evaluation report: report.json (the event's `report` ref), report.md and PNG charts.

report.json names the other files' ArtifactRefs under "artifacts". Every file is rendered from
the report's numbers alone (no clock, no PNG software tag), so the same results give the same
bytes and a redelivered job re-stores the same content-addressed refs.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from shared.artifacts import AsyncArtifactStore
from shared.events.base import ArtifactRef

FORMAT = "distillery.evaluation.v1"
COLORS = {"teacher": "#4c72b0", "base": "#999999", "candidate": "#55a868", "source": "#c44e52"}


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:.4g}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    reason = f": {report['reason']}" if report["reason"] else ""
    candidate = report["candidate"]
    quant = f" ({candidate['quant_format']})" if candidate["quant_format"] else ""
    lines = [
        f"# Evaluation of {report['task_name']} v{report['task_version']}, "
        f"iteration {report['iteration']}",
        "",
        f"**{verdict}** ({report['outcome']}){reason}",
        "",
        f"Candidate: {candidate['kind']} `{candidate['ref']['sha256'][:12]}`{quant}",
        f"Golden set: {report['golden_set']['examples']} examples, "
        f"`{report['golden_set']['sha256'][:12]}`",
        "",
        "## Gates",
        "",
        "| gate | value | threshold | passed |",
        "|---|---|---|---|",
    ]
    for g in report["gates"]:
        lines.append(
            f"| {g['name']} | {_fmt(g['value'])} | {_fmt(g['threshold'])} | {g['passed']} |"
        )
    lines += _versus(report.get("vs_teacher"))
    models = report["models"]
    names = list(models)
    lines += ["", "## Task accuracy by slice", "", "| slice | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    slices = sorted({s for m in models.values() for s in m["task"]["slices"]})
    for s in ["overall", *slices]:
        cells = []
        for m in models.values():
            part = m["task"]["overall"] if s == "overall" else m["task"]["slices"].get(s)
            cells.append(_fmt(part["accuracy"], pct=True) if part else "n/a")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Failing slices: {', '.join(report['failing_slices']) or 'none'}", ""]
    lines += _patterns(report.get("error_patterns") or [])
    lines += ["## Output quality", "", "| model | JSON valid | schema valid | refusal |"]
    lines.append("|---|---|---|---|")
    for name, m in models.items():
        o = m["task"]["overall"]
        lines.append(
            f"| {name} | {_fmt(o['json_validity'], True)} | {_fmt(o['schema_validity'], True)} "
            f"| {_fmt(o['refusal'], True)} |"
        )
    lines += _fields(models)
    lines += ["", "## General capability", ""]
    for name, m in models.items():
        if "general" in m:
            g = m["general"]
            lines.append(
                f"- {name}: probe accuracy {_fmt(g['probe_accuracy'], True)}, "
                f"perplexity {_fmt(g['perplexity'])}"
            )
    reg = report.get("general_regression") or {}
    lines.append(
        f"- regression: probe {_fmt(reg.get('probe'))} ({_probe_test(reg)}), "
        f"cross-entropy {_fmt(reg.get('perplexity'))}"
    )
    lines += ["", "## Prompt tokens per request", "", "| model | mean | max |", "|---|---|---|"]
    for name, m in models.items():
        tokens = m.get("prompt_tokens") or {}
        lines.append(f"| {name} | {_fmt(tokens.get('mean'))} | {_fmt(tokens.get('max'))} |")
    lines += ["", "## Latency (ms)", "", report["latency_note"], ""]
    lines += ["| model | basis | n | P50 | P95 |", "|---|---|---|---|---|"]
    for name, m in models.items():
        for basis, summary in m["latency"].items():
            lines.append(
                f"| {name} | {basis} | {summary['n']} | {_fmt(summary['p50_ms'])} "
                f"| {_fmt(summary['p95_ms'])} |"
            )
    cost = report["cost"]
    lines += ["", "## Cost per query (USD)", "", cost["note"], ""]
    for name, value in cost["per_query_usd"].items():
        lines.append(f"- {name}: {_fmt(value)}")
    if report.get("judge"):
        j = report["judge"]
        lines += ["", "## LLM judge", "", f"- pass rate {_fmt(j['pass_rate'], True)}"]
        lines.append(f"- agreement with golden labels {_fmt(j['agreement'], True)}")
    lines += ["", "## Charts", "", "![accuracy by slice](slices.png)", "![latency](latency.png)"]
    return "\n".join(lines) + "\n"


def _versus(block: dict[str, Any] | None) -> list[str]:
    if not block:
        return []
    lines = [
        "",
        "## Candidate vs teacher",
        "",
        f"Quality is the primary metric, `{block['primary_metric']}`.",
        "",
        "| figure | candidate | teacher | candidate / teacher |",
        "|---|---|---|---|",
    ]
    for name in ("quality", "latency_p95_ms", "cost_per_query_usd"):
        f = block[name]
        lines.append(
            f"| {name} | {_fmt(f['student'])} | {_fmt(f['teacher'])} | {_fmt(f['ratio'])} |"
        )
    basis = block["latency_p95_ms"].get("student_basis")
    if basis:
        lines += ["", f"Candidate latency basis: {basis}; the teacher's is per request."]
    return lines


def _fields(models: dict[str, Any]) -> list[str]:
    fields = sorted({f for m in models.values() for f in m["task"]["overall"]["field_match"]})
    if not fields:
        return []
    lines = ["", "## Accuracy by field", ""]
    lines += ["| model | " + " | ".join([*fields, "mean"]) + " |", "|---" * (len(fields) + 2) + "|"]
    for name, m in models.items():
        o = m["task"]["overall"]
        cells = [_fmt(o["field_match"].get(f), True) for f in fields]
        cells.append(_fmt(o.get("mean_field_accuracy"), True))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _patterns(patterns: list[dict[str, Any]]) -> list[str]:
    if not patterns:
        return []
    lines = ["## Error patterns (labels only)", "", "| field | expected | got | count |"]
    lines.append("|---|---|---|---|")
    for c in patterns:
        # In code spans: "<invalid>" would otherwise render as an HTML tag, i.e. not at all.
        lines.append(f"| {c['field']} | `{c['expected']}` | `{c['got']}` | {c['count']} |")
    return [*lines, ""]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No Software tag: the bytes depend on the data only, not on the matplotlib build.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def render_charts(report: dict[str, Any]) -> dict[str, bytes]:
    # The object API with the Agg canvas: no pyplot global state, safe off the main thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = report["models"]
    slices = sorted({s for m in models.values() for s in m["task"]["slices"]})
    fig = Figure(figsize=(max(5.0, 1.2 * len(slices) + 2), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    for i, (name, m) in enumerate(models.items()):
        values = [(m["task"]["slices"].get(s) or {}).get("accuracy", 0.0) for s in slices]
        xs = [x + i * width for x in range(len(slices))]
        ax.bar(xs, values, width, label=name, color=COLORS.get(name))
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(slices))], slices)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("task accuracy")
    ax.set_title("Accuracy by slice")
    ax.legend(fontsize="small")
    fig.tight_layout()
    charts = {"slices.png": _png(fig)}

    fig = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels, data = [], []
    for name, m in models.items():
        for basis, values in m.get("latency_values", {}).items():
            if values:
                labels.append(f"{name}\n{basis}")
                data.append(values)
    if data:
        ax.boxplot(data, tick_labels=labels)
        ax.set_yscale("log")
    ax.set_ylabel("ms per example")
    ax.set_title("Latency distribution")
    fig.tight_layout()
    charts["latency.png"] = _png(fig)
    return charts


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, indent=2).encode()


async def store_report(artifacts: AsyncArtifactStore, report: dict[str, Any]) -> ArtifactRef:
    """Store md + charts, then report.json naming them; returns report.json's ref."""
    charts = await asyncio.to_thread(render_charts, report)
    refs = {
        "report.md": await artifacts.put_bytes(
            render_markdown(report).encode(), media_type="text/markdown"
        )
    }
    for name, png in charts.items():
        refs[name] = await artifacts.put_bytes(png, media_type="image/png")
    body = {**report, "artifacts": {k: v.model_dump(mode="json") for k, v in refs.items()}}
    return await artifacts.put_bytes(_dumps(body), media_type="application/json")


def _probe_test(reg: dict) -> str:
    if reg.get("probe_lost") is None:
        return "no probes"
    told = f"lost {reg['probe_lost']}, won {reg['probe_won']}, p {_fmt(reg.get('probe_p_value'))}"
    if reg.get("probe_gated") is None:
        return f"{told}; the base answers too few for any loss to show, not gated"
    return f"{told}; gated as {_fmt(reg['probe_gated'])}"
