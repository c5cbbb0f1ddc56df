"""The order in which one k6 VU walks a block's arms when delays are injected (`orchbench calibrate`).

Each injected delay is held on the answer's way back (serving.runtime), so the request after a
delayed one meets a model, and a k6, that idled for that delay: a carry-over from one request to the
next. If the arms' requests followed different mixes of arms, that carry-over would differ between
arms and would not cancel out of their difference (the recovered delay: arm d minus the reference).

:func:`balanced_rotation` gives a cycle of k² requests over k arms in which **every arm follows every
arm, itself included, exactly once** (a de Bruijn sequence of order 2): the requests of every arm meet
the same mix of idles, so the carry-over cancels out of every difference of two arms, and every arm
gets 1/k of the requests. Of the many such cycles it takes one whose arms come round evenly
(`CYCLES`, k <= 8): arms close in time share the host's slow spells (benchmarks/README.md: spells of
~7 requests), and their difference is what cancels those. `benchmarks/rotation_search.py` found each
by a depth-first search for the smallest bound on an arm's gap between two of its requests that it
could meet within a node budget; the lexicographic cycle, which any k gets beyond the table, bunches
arm 0's requests at its start (largest gap for 5 arms: 8 requests in the table's cycle, 18 in the
lexicographic one).

Measured (benchmarks/README.md, "Balanced rotation", 2026-12-07): three calibrations with this cycle
covered their delay in 36 of 36 intervals, 28 of 36 errors within 0.05 ms; side by side with the
baseline-between walk (gRPC, two pairs), the standard errors were smaller in 5 of 8 comparisons,
equal in 2, larger in 1.

What it replaced: the baseline's request before every other arm's (b, x1, b, x2, ...): every arm
followed the same arm, so the carry-over cancelled too, but the baseline took half of the requests
and, with the five arms of `orchbench calibrate --delays 0.5,1,2`, the reference and each delay arm
1/8 of them, where this cycle gives them 1/5: 1.6 times as many requests for the same time.

A cycle whose consecutive windows are plain permutations of the arms (round after round) cannot do
this: an arm never follows itself within a round, so each arm's requests follow the *other* arms,
whose mean delay is lower for the arm whose own delay is the largest: a bias that grows with the
delay. The self-pairs are what keep it balanced.
"""

from __future__ import annotations

from orchbench.core.errors import ConfigError

#: k -> an evenly spread de Bruijn cycle of order 2 over arms 0..k-1 (one digit an arm), and the
#: largest gap between two requests of one arm in it (benchmarks/rotation_search.py prints this table;
#: tests/test_rotation.py checks every pair once and the gaps)
CYCLES: dict[int, tuple[str, int]] = {
    1: ("0", 1),
    2: ("0110", 3),
    3: ("012022110", 6),
    4: ("0123031102133220", 7),
    5: ("0123402114432033104224130", 8),
    6: ("012345021354032551142043105224415330", 10),
    7: ("0123456021354620315240632514110055364226166504433", 13),
    8: ("0123456702135460725143620571642730652417631104750332266155377440", 16),
}


def lexicographic_cycle(k: int) -> list[int]:
    """The lexicographically smallest de Bruijn cycle of order 2 over 0..k-1: the words of length 1
    and 2 that are smaller than their rotations, in order (0, 01, 02, ..., 1, 12, ...; Fredricksen
    and Maiorana). Every ordered pair once, but arm 0's requests bunched at the start."""
    out: list[int] = []
    for first in range(k):
        out.append(first)
        for second in range(first + 1, k):
            out += [first, second]
    return out


def balanced_rotation(arms: int) -> list[int]:
    """The cycle of arms² indices (into the block's arm order, whose first arm opens) a VU walks when
    delays are injected: every arm follows every arm, itself included, exactly once."""
    if arms < 1:
        raise ConfigError(f"a rotation needs at least one arm, got {arms}")
    if arms in CYCLES:
        return [int(c) for c in CYCLES[arms][0]]
    return lexicographic_cycle(arms)


def max_gap(cycle: list[int]) -> int:
    """The longest run of requests, cyclically, from one request of an arm to its next."""
    n = len(cycle)
    gaps = []
    for arm in set(cycle):
        at = [i for i, a in enumerate(cycle) if a == arm]
        gaps += [(at[(j + 1) % len(at)] - at[j]) % n or n for j in range(len(at))]
    return max(gaps)
