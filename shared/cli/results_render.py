"""A cycle's results (results.collect) as Markdown, and as HTML with inline SVG charts."""

from __future__ import annotations

import html
from typing import Any


def fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "usd":
        return f"${value:.6f}" if abs(value) < 0.01 else f"${value:,.2f}"
    if kind == "ms":
        return f"{value:,.0f} ms"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def tables(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by both renderings."""
    out = []
    q = r.get("quality")
    if q:
        out.append(
            (
                f"Quality on the golden set ({q['examples']} rows, {q['metric']})",
                ["teacher", "base", "student", "student / teacher"],
                [[fmt(q["teacher"]), fmt(q["base"]), fmt(q["student"]), fmt(q["ratio"])]],
            )
        )
    if r.get("serving"):
        out.append(
            (
                "Latency, cost and prompt per query",
                ["model", "P50", "P95", "cost / query", "prompt tokens", "figures are"],
                [
                    [
                        s["model"],
                        fmt(s["p50_ms"], "ms"),
                        fmt(s["p95_ms"], "ms"),
                        fmt(s["cost_per_query_usd"], "usd"),
                        fmt(s["prompt_tokens"]),
                        s["source"],
                    ]
                    for s in r["serving"]
                ],
            )
        )
    if r.get("variants"):
        out.append(
            (
                "Serving forms (quantizer)",
                ["variant", "engine", "status", "size", "retention", "P95", "decode tok/s", ""],
                [
                    [
                        v["name"],
                        v["engine"],
                        v["status"],
                        f"{v['size_bytes'] / 2**20:,.0f} MiB" if v.get("size_bytes") else "n/a",
                        fmt(v.get("retention")),
                        fmt(v.get("p95_ms"), "ms"),
                        fmt(v.get("decode_tokens_per_s")),
                        "chosen" if v["chosen"] else (v.get("reason") or "")[:80],
                    ]
                    for v in r["variants"]
                ],
            )
        )
    if r.get("residency"):
        d = r["residency"]
        out.append(
            (
                "Data residency",
                ["", ""],
                [
                    ["teacher endpoint", d["teacher_host"]],
                    ["hosts the task allows a teacher on", ", ".join(d["allowed_teacher_hosts"])],
                    ["sent to the teacher", d["teacher_receives"]],
                    ["student runs", d["student"]],
                    ["production queries", d["production_queries"]],
                ],
            )
        )
    if r.get("roi"):
        m = r["roi"]
        out.append(
            (
                f"Return on the cycle at {m['queries_per_day']:,} queries a day",
                ["", ""],
                [
                    ["teacher's bill for synthesis", fmt(m["synthesis_teacher_usd"], "usd")],
                    [
                        "compute (cycle wall time x hourly price)",
                        f"{m['compute_hours']:.2f} h x {fmt(m['compute_hour_usd'], 'usd')}",
                    ],
                    ["one-time cost", fmt(m["one_time_usd"], "usd")],
                    ["saved per query", fmt(m["saving_per_query_usd"], "usd")],
                    ["saved per day", fmt(m["saving_per_day_usd"], "usd")],
                    ["break-even", _days(m)],
                ],
            )
        )
    if r.get("drift"):
        out.append(_drift(r["drift"]))
    return out


def _drift(d: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    def share(m: dict[str, int] | None) -> str:
        if not m or not m["answered"]:
            return "not measured"
        return f"{m['right']} of {m['answered']} right ({m['right'] / m['answered']:.0%})"

    a = d.get("alarm")
    alarm = "none seen"
    if a:
        alarm = f"{a['kind']} drift, {a['score']:.4g} over {a['threshold']:.4g}"
        alarm += f" on {a['window_size']} requests"
    return (
        f"Drift: {d['kind']}, answered by the live student",
        ["", ""],
        [
            ["before the retrain (first student)", share(d["before"])],
            ["alarm", alarm],
            ["cycle it started", f"{d['cycle_id'] or 'none'} ({d['reason'] or 'no request'})"],
            ["its feedback rows (of them payroll)", _rows(d)],
            ["after the retrain (second student, other tickets)", share(d["after"])],
        ],
    )


def _rows(d: dict[str, Any]) -> str:
    if d.get("feedback_rows") is None:
        return "none"
    return f"{d['feedback_rows']} ({d['payroll_rows']})"


def _days(roi: dict[str, Any]) -> str:
    if roi["break_even_days"] is not None:
        return f"{roi['break_even_days']:.2f} days"
    if not roi["served"]:
        return "none yet: no student serves this task (the saving above is on paper)"
    if roi["saving_per_query_usd"] is not None:
        return "never: the student costs no less per query"
    return "n/a"


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Results of cycle {r['cycle_id']} ({r['task']})", ""]
    lines += [f"Outcome: {r['outcome']}. Wall time {r['wall_s'] / 60:.1f} min.", ""]
    lines += [f"Teacher figures: {r['teacher_label']}. Student figures: measured.", ""]
    for title, header, rows in tables(r):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    if r["training_curve"]:
        first, last = r["training_curve"][0], r["training_curve"][-1]
        lines.append(
            f"Training: {len(r['training_curve'])} progress events, loss {first[1]:.3f} at step "
            f"{first[0]} to {last[1]:.3f} at step {last[0]} (chart in results.html)."
        )
    return "\n".join(lines) + "\n"


def page(r: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>Distillery results {e(str(r['cycle_id']))}</title>",
        "<style>body{font:14px sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style>",
        f"<h1>Results of cycle {e(str(r['cycle_id']))} ({e(str(r['task']))})</h1>",
        f"<p>Outcome: {e(r['outcome'])}. Wall time {r['wall_s'] / 60:.1f} min.</p>",
        f"<p>Teacher figures: {e(r['teacher_label'])}. Student figures: measured.</p>",
    ]
    for title, header, rows in tables(r):
        parts.append(f"<h2>{e(title)}</h2><table><tr>")
        parts += [f"<th>{e(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    q = r.get("quality")
    if q:
        bars = [(n, q[n]) for n in ("teacher", "base", "student") if q[n] is not None]
        parts += ["<h2>Quality</h2>", bar_chart(bars, 1.0, "{:.2f}")]
    serving = [s for s in r.get("serving", []) if s["p95_ms"] is not None]
    if serving:
        top = max(s["p95_ms"] for s in serving)
        chart = bar_chart([(s["model"], s["p95_ms"]) for s in serving], top, "{:,.0f} ms")
        parts += ["<h2>P95 latency</h2>", chart]
    if r["training_curve"]:
        parts += ["<h2>Training loss</h2>", line_chart(r["training_curve"])]
    return "\n".join(parts) + "\n"


def bar_chart(bars: list[tuple[str, float]], top: float, label: str) -> str:
    width, row = 420, 26
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width + 180}' "]
    out.append(f"height='{row * len(bars) + 8}'>")
    for i, (name, value) in enumerate(bars):
        w = 0 if top <= 0 else max(1, round(width * value / top))
        y = 4 + i * row
        out.append(f"<text x='0' y='{y + 16}'>{html.escape(name)}</text>")
        out.append(f"<rect x='80' y='{y}' width='{w}' height='{row - 6}' fill='#4a7ab5'/>")
        out.append(f"<text x='{86 + w}' y='{y + 16}'>{label.format(value)}</text>")
    return "".join(out) + "</svg>"


def line_chart(points: list[tuple[int, float]]) -> str:
    width, height = 560, 200
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    x0, x1 = min(steps), max(steps) or 1
    top = max(losses) or 1.0
    coords = " ".join(
        f"{40 + (width - 50) * (s - x0) / max(1, x1 - x0):.1f},"
        f"{height - 20 - (height - 30) * v / top:.1f}"
        for s, v in points
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
        f"<polyline fill='none' stroke='#4a7ab5' stroke-width='1.5' points='{coords}'/>"
        f"<text x='0' y='14'>{top:.2f}</text><text x='0' y='{height - 20}'>0</text>"
        f"<text x='40' y='{height - 4}'>step {x0}</text>"
        f"<text x='{width - 80}' y='{height - 4}'>step {x1}</text></svg>"
    )
