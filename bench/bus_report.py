"""bench/bus.py's verdict: its table, the goals, and the baseline from before kernel v2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BEFORE_COMMIT = "b1a3a7d"  # the last commit before kernel v2 (the stage template, batches)


def report(
    kind: str,
    n: int,
    results: dict[str, Any],
    before: float | None,
    labels: dict[str, str],
    warmup: int,
) -> bool:
    raw = results["raw"]
    print(f"db={kind}  N={n}  (warm-up {warmup} per path, untimed)")
    print(f"{'path':<38}{'seconds':>9}{'per second':>12}{'/ raw':>8}{'effects':>9}{'dupes':>7}")
    ok = True
    for key, res in results.items():
        ratio = raw.seconds / res.seconds
        line = f"{labels[key]:<38}{res.seconds:>9.3f}{n / res.seconds:>12.1f}{ratio:>8.3f}"
        if key != "raw":
            line += f"{res.effects:>9}{res.effects - res.distinct:>7}"
            if res.effects != warmup + n or res.distinct != warmup + n:
                ok = False
                line += f"  EXPECTED {warmup + n} distinct effects"
        print(line)
    batched = raw.seconds / results["batched"].seconds
    print(
        f"goal batched >= 0.5 x raw: {batched:.3f} x raw, {'met' if batched >= 0.5 else 'NOT met'}"
    )
    if before is None:
        print(
            f"goal per-message >= 3 x before ({BEFORE_COMMIT}): not measured on this machine "
            "(--before DIR), NOT met"
        )
    else:
        times = n / results["per-message"].seconds / before
        print(
            f"goal per-message >= 3 x before ({BEFORE_COMMIT}, {before:.1f}/s in this run): "
            f"{times:.2f} x, {'met' if times >= 3 else 'NOT met'}"
        )
    return ok


def measure_before(checkout: Path, kind: str, n: int) -> float:
    """Per-message effects/s of the code before kernel v2, run from its own checkout."""
    script = checkout / "bench" / "bus.py"
    if not script.is_file():
        raise SystemExit(f"--before {checkout}: no bench/bus.py there")
    done = subprocess.run(
        [sys.executable, str(script), "--db", kind, "--n", str(n)],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60 + n,
        check=False,
    )
    # Its table: "project (outbox+relay+inbox+effect)   N   seconds   per-second".
    found = re.search(r"^project \(.*?\)\s+\d+\s+[\d.]+\s+([\d.]+)\s*$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise SystemExit(
            f"--before {checkout}: its bench failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    print(done.stdout.rstrip())
    print()
    return float(found.group(1))
