"""General capability against the base: the probes each model lost and won, and the rise of
general-text cross-entropy, as one gated regression figure (evaluator README, gates)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .data import ProbeRow
from .metrics import probe_correct

# A probe drop counts toward the gate only when a one-sided sign test over the probes that
# changed puts it beyond chance at this level. With 48 probes and a base that answers 17 of
# them, one probe lost is a 5.9 % drop but p = 0.5: a coin flip, not a measurement.
PROBE_ALPHA = 0.05
# The fewest probes the base must answer for losing all of them to pass that test (0.5**5).
PROBE_POWER = next(n for n in range(1, 64) if 0.5**n < PROBE_ALPHA)


@dataclass(frozen=True)
class ProbePairs:
    """Each probe's outcome on the base and on the candidate, paired: the probes a
    candidate got wrong that its base got right (lost), and the reverse (won)."""

    base_right: int
    lost: int
    won: int

    @property
    def drop(self) -> float | None:
        return (self.lost - self.won) / self.base_right if self.base_right else None

    @property
    def p_value(self) -> float:
        """P(at least `lost` of the changed probes are losses | each change is a coin flip)."""
        n = self.lost + self.won
        return sum(math.comb(n, k) for k in range(self.lost, n + 1)) / 2**n if n else 1.0


def probe_pairs(
    base: Mapping[str, str], candidate: Mapping[str, str], probes: Sequence[ProbeRow]
) -> ProbePairs | None:
    if not probes:
        return None

    def right(replies: Mapping[str, str], probe: ProbeRow) -> bool:
        return probe_correct(replies.get(probe.id, ""), probe.answer)

    marks = [(right(base, p), right(candidate, p)) for p in probes]
    return ProbePairs(
        base_right=sum(b for b, _ in marks),
        lost=sum(b and not c for b, c in marks),
        won=sum(c and not b for b, c in marks),
    )


def general_regression(
    *, probes: ProbePairs | None, candidate_ppl: float | None, base_ppl: float | None
) -> dict[str, Any]:
    """Relative drops of the candidate against its base; the worst gated one is the
    regression, None when nothing could measure it (the gate then fails as unmeasured).

    Probes: the drop is (lost - won) / base_right. It is gated as measured when the sign test
    puts the losses beyond chance (PROBE_ALPHA); a drop within chance is gated as no drop (it
    is still reported, with its p-value), because a small probe set cannot tell it from noise
    and a gate that fails on noise fails a better model as often. A base that answers fewer
    than PROBE_POWER probes cannot show a loss beyond chance even if every one is lost: its
    probes measure nothing and are not gated. Perplexity: the relative rise of its log, i.e.
    of the mean token cross-entropy, which stays comparable across vocabularies and does not
    explode the way a ratio of perplexities does for a near-random base.
    """
    drop = probes.drop if probes else None
    p_value = probes.p_value if probes and drop is not None else None
    gated = None
    if probes and drop is not None and probes.base_right >= PROBE_POWER:
        gated = drop if p_value is not None and p_value < PROBE_ALPHA else min(drop, 0.0)
    ppl = None
    if candidate_ppl is not None and base_ppl is not None and base_ppl > 1:
        ppl = (math.log(candidate_ppl) - math.log(base_ppl)) / math.log(base_ppl)
    counted = [v for v in (gated, ppl) if v is not None]
    return {
        "probe": drop,
        "probe_lost": probes.lost if probes else None,
        "probe_won": probes.won if probes else None,
        "probe_base_right": probes.base_right if probes else None,
        "probe_p_value": p_value,
        "probe_gated": gated,
        "perplexity": ppl,
        "worst": max(counted) if counted else None,
    }
