"""How a reply's value is compared with the golden one: one rule for every scorer.

The evaluator scores candidates and the quantizer scores variants with it, so a variant's
retention is measured by the same rule as the gate it is compared against. Strings compare
after trimming and case-folding ("High" and "high " are the same), numbers as floats.
"""

from __future__ import annotations

from typing import Any


def normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def values_match(predicted: Any, expected: Any) -> bool:
    return normalise(predicted) == normalise(expected)
