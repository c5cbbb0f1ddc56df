"""The order in which one k6 VU walks a block's arms when delays are injected (`orchbench calibrate`).

Each injected delay is held on the answer's way back (serving.runtime), so the requests after a
delayed one meet a model, and a k6, that idled for that delay: a carry-over from one request to the
next ones. If the arms' requests followed different mixes of arms, that carry-over would differ
between arms and would not cancel out of their difference (the recovered delay: arm d minus the
reference).

:func:`balanced_rotation` gives a cycle of k³ requests over k arms in which **every arm follows every
ordered pair of arms, itself included, exactly once** (a de Bruijn cycle of order 3). So every arm's
requests come one place after every arm k times, and two places after every arm k times: the holds
one and two places back are the same mix for every arm, and every arm gets 1/k of the requests.
Measured (benchmarks/README.md, "What the lean is made of", `benchmarks/carryover.py`): a held answer
slows the next request by 15-55 µs per ms of hold, and on gRPC the one two places on by 4-18 µs per
ms less; the order-2 cycle this replaced (every arm after every arm once, k² requests) evened out
the first only, and seed 7's block orders left the 2 ms arm's requests 1.1 ms less hold two places
back than the reference's, about a third of calibration's +0.03 ms lean at 2 ms. Three calibrations
with this cycle ("Order-3 walk"): imbalance one and two back 0.00 ms for every arm; 35 of 36
intervals covered their delay, 30 of 36 errors within 0.05 ms, 20 of 36 above 0 (the order-2
cycle: 30).

k³ grows fast (125 requests for 5 arms, 1,000 for 10): a block should walk its cycle several times
(calibrate's 6 s an arm walks the 5-arm cycle ~17 times here), since the cycle a block ends in
part of is not balanced.

The cycle is an Eulerian circuit of the de Bruijn graph whose nodes are the ordered pairs of arms
and whose edges are the triples (Hierholzer's algorithm, 20 lines, no graph library here: networkx
would be a dependency for this alone), each node's edges taken in an order shuffled by a seed. Of
the first SEARCH_SEEDS seeds, `WALKS` keeps the one whose arms come round most evenly (the smallest
largest gap between two requests of one arm): arms close in time share the host's slow spells
(~7 requests, benchmarks/README.md), and their difference is what cancels those. For five arms that
gap is 14 requests (seed 0's: 26; the order-2 cycle's was 8). `benchmarks/rotation_search.py`
prints the table (3 s for 1-8 arms); more arms than it holds take seed 0.

A cycle whose consecutive windows are plain permutations of the arms (round after round) cannot do
this: an arm never follows itself within a round, so each arm's requests follow the *other* arms,
whose mean delay is lower for the arm whose own delay is the largest: a bias that grows with the
delay. The self-pairs and self-triples are what keep it balanced.
"""

from __future__ import annotations

import random

from orchbench.core.errors import ConfigError

#: how many seeds benchmarks/rotation_search.py tries for each number of arms
SEARCH_SEEDS = 2000

#: k -> (seed, largest gap): the seed of `de_bruijn_walk` whose cycle spreads the arms most evenly of
#: the first SEARCH_SEEDS, and that cycle's largest gap between two requests of one arm
#: (benchmarks/rotation_search.py prints this table; tests/test_rotation.py checks it)
WALKS: dict[int, tuple[int, int]] = {
    1: (0, 1),
    2: (0, 4),
    3: (338, 6),
    4: (111, 9),
    5: (1015, 14),
    6: (347, 19),
    7: (120, 27),
    8: (42, 31),
}


def de_bruijn_walk(k: int, seed: int) -> list[int]:
    """A de Bruijn cycle of order 3 over arms 0..k-1, starting with arm 0: every triple of arms once,
    cyclically. Hierholzer's algorithm from node (0, 0), each node's outgoing arms shuffled by
    `seed`; the circuit read as the arm each edge adds."""
    rng = random.Random(seed)
    left: dict[tuple[int, int], list[int]] = {}
    for a in range(k):
        for b in range(k):
            nxt = list(range(k))
            rng.shuffle(nxt)
            left[a, b] = nxt
    stack: list[tuple[tuple[int, int], int]] = [((0, 0), -1)]
    walked: list[int] = []
    while stack:
        node, arm = stack[-1]
        if left[node]:
            c = left[node].pop()
            stack.append(((node[1], c), c))
        else:
            stack.pop()
            walked.append(arm)
    cycle = walked[::-1][1:]  # the circuit's edges in order (the start's -1 dropped)
    return cycle[-1:] + cycle[:-1]  # it ends at node (0, 0): its last arm, 0, opens


def balanced_rotation(arms: int) -> list[int]:
    """The cycle of arms³ indices (into the block's arm order, whose first arm opens) a VU walks when
    delays are injected: every arm follows every ordered pair of arms, itself included, exactly once."""
    if arms < 1:
        raise ConfigError(f"a rotation needs at least one arm, got {arms}")
    seed = WALKS[arms][0] if arms in WALKS else 0
    return de_bruijn_walk(arms, seed)


def max_gap(cycle: list[int]) -> int:
    """The longest run of requests, cyclically, from one request of an arm to its next."""
    n = len(cycle)
    gaps = []
    for arm in set(cycle):
        at = [i for i, a in enumerate(cycle) if a == arm]
        gaps += [(at[(j + 1) % len(at)] - at[j]) % n or n for j in range(len(at))]
    return max(gaps)
