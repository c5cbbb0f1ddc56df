"""Verdicts from intervals against a threshold: pass, fail or inconclusive. Pure functions.

- **pass**: the whole 95 % CI lies below the threshold (hi < threshold);
- **fail**: the whole 95 % CI lies above it (lo > threshold);
- **inconclusive**: the CI contains the threshold (or there is no CI). The verdict then says how
  many more blocks would likely decide it: with the run's per-block SD s = se·√n, the smallest
  N with t(0.975, N-1) · s / √N < |estimate - threshold|, minus the n blocks already run, assuming
  the estimate and s stay where they are (a planning figure, not a promise).

Exit codes (the `orchbench trend` gate and the CronWorkflow's gate step): EXIT_PASS 0, EXIT_FAIL 3,
EXIT_INCONCLUSIVE 4 (2 stays bad input, 1 a failure while running).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats as sps

VerdictName = Literal["pass", "fail", "inconclusive", "n/a"]
EXIT_PASS = 0
EXIT_FAIL = 3
EXIT_INCONCLUSIVE = 4
EXIT_CODES: dict[str, int] = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}
#: More than this many extra blocks is reported as "more than MAX_EXTRA_BLOCKS".
MAX_EXTRA_BLOCKS = 10_000


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictName
    threshold_ms: float | None
    more_blocks: int | None = None  # inconclusive: extra blocks that would likely decide it
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.verdict, EXIT_PASS)

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "threshold_ms": self.threshold_ms,
            "more_blocks": self.more_blocks,
            "reason": self.reason,
        }


def blocks_to_decide(distance: float, se: float, n: int) -> int | None:
    """Total blocks N (>= n + 1) at which the t half-width with per-block SD se·√n falls below
    `distance` (= |estimate - threshold|); None when no number would (distance 0, no SE)."""
    if n < 2 or not (math.isfinite(se) and se > 0) or not (math.isfinite(distance) and distance > 0):
        return None
    s = se * math.sqrt(n)
    # start from the normal approximation, then walk up with the t quantile
    m = max(n + 1, math.ceil((1.96 * s / distance) ** 2))
    while float(sps.t.ppf(0.975, m - 1)) * s / math.sqrt(m) >= distance:
        m += max(1, m // 50)
        if m - n > MAX_EXTRA_BLOCKS:
            return None
    return m


def judge(
    estimate: float | None,
    ci95: tuple[float | None, float | None] | list[float | None] | None,
    threshold_ms: float | None,
    se: float | None = None,
    n_blocks: int = 0,
) -> Verdict:
    """The verdict of one overhead against `threshold_ms` (module docstring)."""
    if threshold_ms is None:
        return Verdict("n/a", None, reason="no threshold")
    if estimate is None:
        return Verdict("n/a", threshold_ms, reason="no estimate")
    lo, hi = (None, None) if ci95 is None else (ci95[0], ci95[1])
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return Verdict("inconclusive", threshold_ms, None, "no confidence interval (needs >= 2 blocks)")
    if hi < threshold_ms:
        return Verdict(
            "pass", threshold_ms, reason=f"95 % CI [{lo:+.3f}, {hi:+.3f}] below {threshold_ms:g} ms"
        )
    if lo > threshold_ms:
        return Verdict(
            "fail", threshold_ms, reason=f"95 % CI [{lo:+.3f}, {hi:+.3f}] above {threshold_ms:g} ms"
        )
    total = blocks_to_decide(abs(estimate - threshold_ms), se if se is not None else math.nan, n_blocks)
    more = None if total is None else total - n_blocks
    hint = (
        f"about {more} more blocks would likely decide it"
        if more is not None
        else "no number of blocks is likely to decide it (estimate on the threshold, or no SE)"
    )
    return Verdict(
        "inconclusive",
        threshold_ms,
        more,
        f"95 % CI [{lo:+.3f}, {hi:+.3f}] contains {threshold_ms:g} ms; {hint}",
    )
