"""Between-deployment noise: the A/A arm as a band, and the arms that do not stand clear of it. Pure.

An A/A arm (`arms[].aa: true`) is a second deployment identical to the baseline (locally: a second
model server process on its own port, pinned like the baseline's), measured interleaved with the
other arms. Its "overhead" is the difference between two copies of the same thing: the noise floor
of a comparison between two deployments.

The rule (per transport, arm and metric): an arm's overhead **stands clear** of the A/A noise when
its 95 % CI and the A/A arm's 95 % CI are disjoint (the arm's lower bound above the A/A upper
bound, or its upper bound below the A/A lower bound). It is **flagged** (`within_aa_noise`) when the
two intervals overlap, or either has no interval. The arm as a whole is flagged when its mean or
p50 is (the figures the report leads with). Overlap of two 95 % intervals is a conservative test
(two intervals can overlap while the difference is significant); that is the point: a flag says
"this could be the noise between two starts of the same server", not "there is no effect".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The figures whose flag flags the arm.
FLAG_METRICS = ("mean", "p50")


def _ci(entry: Mapping[str, Any] | None) -> tuple[float, float] | None:
    ci = (entry or {}).get("ci95")
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return float(ci[0]), float(ci[1])


def overlaps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two closed intervals meet (a missing interval counts as overlapping: not clear)."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def aa_noise(
    arm_overheads: Mapping[str, Mapping[str, Any]],
    aa_overheads: Mapping[str, Mapping[str, Any]],
    aa_arm: str,
    metrics: Sequence[str] = FLAG_METRICS,
) -> dict[str, Any]:
    """One arm's flag against the A/A arm: `{aa_arm, rule, metrics: {m: {aa_ci95, within_aa_noise}},
    within_aa_noise}` from the two arms' `overhead_ms` entries."""
    per: dict[str, Any] = {}
    for metric in arm_overheads:
        mine, band = _ci(arm_overheads.get(metric)), _ci(aa_overheads.get(metric))
        per[metric] = {
            "aa_ci95": None if band is None else list(band),
            "within_aa_noise": overlaps(mine, band),
        }
    return {
        "aa_arm": aa_arm,
        "rule": "flagged when the arm's 95 % CI overlaps the A/A arm's 95 % CI (mean or p50)",
        "metrics": per,
        "within_aa_noise": any(per.get(m, {}).get("within_aa_noise", True) for m in metrics),
    }


def flag_arms(by_arm: dict[str, dict[str, Any]], aa_arm: str | None) -> dict[str, bool]:
    """Adds `aa_noise` to every non-A/A arm's result in `by_arm` (in place); returns arm -> flagged."""
    if aa_arm is None or aa_arm not in by_arm:
        return {}
    band = by_arm[aa_arm]["overhead_ms"]
    flags: dict[str, bool] = {}
    for arm, res in by_arm.items():
        if arm == aa_arm:
            res["aa_control"] = True
            continue
        res["aa_noise"] = aa_noise(res["overhead_ms"], band, aa_arm)
        flags[arm] = bool(res["aa_noise"]["within_aa_noise"])
    return flags
