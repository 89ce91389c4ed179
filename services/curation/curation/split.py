"""Train/validation split, stratified by slice and decided by row-id hashes only.

Within each slice, rows are ranked by sha256("split:" + id) and the lowest-ranked
round(share * n) go to validation (at most n - 1, so every slice trains on something; and at
least one row overall when any slice has two). The same rows therefore always split the same
way, whatever order they arrive in; and when a later iteration adds rows, a row's rank among
the old ones is unchanged, so validation rows mostly stay validation rows.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

T = TypeVar("T")


def rank(salt: str, row_id: str) -> str:
    return hashlib.sha256(f"{salt}:{row_id}".encode()).hexdigest()


def validation_count(n: int, share: float) -> int:
    # Half-up, not Python's banker's rounding: 0.1 * 25 = 2.5 should give 3, not 2.
    wanted = int(Decimal(str(share * n)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(0, min(n - 1, wanted))


def stratified_split(
    rows: Sequence[T], share: float, key: Callable[[T], str], row_id: Callable[[T], str]
) -> tuple[list[T], list[T]]:
    """(train, validation); each keeps the input order of its rows."""
    strata: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        strata[key(row)].append(i)
    held_out: set[int] = set()
    for members in strata.values():
        ranked = sorted(members, key=lambda i: rank("split", row_id(rows[i])))
        held_out.update(ranked[: validation_count(len(members), share)])
    largest = max(strata.values(), key=len, default=[])
    if not held_out and share > 0 and len(largest) > 1:
        # Small slices each round to zero; training still needs a validation loss to select
        # and stop on, so hold out one row from the slice that can best spare it.
        held_out.add(min(largest, key=lambda i: rank("split", row_id(rows[i]))))
    train = [r for i, r in enumerate(rows) if i not in held_out]
    validation = [r for i, r in enumerate(rows) if i in held_out]
    return train, validation
