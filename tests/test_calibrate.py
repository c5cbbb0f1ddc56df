"""Known-answer calibration (pure parts) and the A/A run: same arm twice, the CI must cover 0."""

from __future__ import annotations

import itertools
import json

import pytest
from scipy import stats as sps

from orchbench.cli.calibrate import REFERENCE_MS, parse_delays, recovered
from orchbench.core.errors import ConfigError
from tests.helpers import orchbench
from tests.pipeline_specs import tiny_spec


def _run(p50, se, n=6):
    """A summary.json fragment as the compare step writes it (t-interval over n blocks)."""
    half = sps.t.ppf(0.975, n - 1) * se
    return {
        "rest": {
            "overhead_ms": {
                "p50": {
                    "estimate": p50,
                    "ci95": [p50 - half, p50 + half],
                    "se": se,
                    "df": n - 1,
                    "n_blocks": n,
                }
            }
        }
    }


def test_recovered_is_difference_with_welch_interval():
    row = recovered(_run(1.51, 0.01), _run(1.0, 0.01), "rest", 0.5)
    assert row["recovered_ms"] == 0.51 and row["error_ms"] == 0.01
    # equal SEs and df 5 each: se = 0.01 * sqrt(2), Welch df = 10, t(0.975, 10) = 2.228
    assert row["se_ms"] == pytest.approx(0.014142, abs=1e-5) and row["df"] == 10.0
    assert row["ci95"] == pytest.approx([0.51 - 0.0315, 0.51 + 0.0315], abs=1e-4)
    assert row["covers"] and row["within_0.05_ms"] and row["passed"]


def test_recovered_needs_both_coverage_and_small_error():
    # covered by a wide interval, but 0.08 ms off: not recovered (the old rule passed it)
    wide = recovered(_run(1.58, 0.05), _run(1.0, 0.05), "rest", 0.5)
    assert wide["covers"] and not wide["within_0.05_ms"] and not wide["passed"]
    # within 0.05 ms, but a narrow interval that misses it: not recovered either (the old rule passed it)
    narrow = recovered(_run(1.54, 0.002), _run(1.0, 0.002), "rest", 0.5)
    assert not narrow["covers"] and narrow["within_0.05_ms"] and not narrow["passed"]


def test_recovered_uses_t_not_196():
    row = recovered(_run(1.5, 0.01, n=3), _run(1.0, 0.01, n=3), "rest", 0.5)
    # df = 4 by Welch: t(0.975, 4) = 2.776, not 1.96
    assert row["ci95"][1] - 0.5 == pytest.approx(2.776 * 0.014142, abs=1e-3)


def test_one_block_run_is_a_clear_error():
    one = {
        "rest": {
            "overhead_ms": {
                "p50": {"estimate": 1.0, "ci95": [0.9, 1.1], "se": 0.05, "df": None, "n_blocks": 1}
            }
        }
    }
    with pytest.raises(ConfigError, match="needs >= 2 blocks"):
        recovered(one, _run(1.0, 0.01), "rest", 0.5)


def test_cli_one_block_spec_one_line_exit_2(tmp_path):
    spec = tiny_spec(tmp_path, blocks=1, duration_s=1)
    proc = orchbench("calibrate", "--delays", "1", "--spec", str(spec), "--out", str(tmp_path / "c"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs >= 2 blocks" in proc.stderr


@pytest.mark.parametrize("text", ["", "a,b", "-1", "0", "1,nan", "5000"])
def test_bad_delays(text):
    with pytest.raises(ConfigError):
        parse_delays(text)


def test_delays_parse():
    assert parse_delays("0.5, 1,2") == [0.5, 1.0, 2.0]


def test_cli_bad_delays_one_line_exit_2():
    proc = orchbench("calibrate", "--delays", "x")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--delays" in proc.stderr


def test_cli_bad_metrics_one_line_exit_2(tmp_path):
    proc = orchbench("calibrate", "--metrics", "p99", "--out", str(tmp_path / "c"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--metrics" in proc.stderr
    assert not (tmp_path / "c").exists()  # refused before anything ran


#: A run whose intervals are wider than this (ms, half-width) cannot tell a 0.2 ms error, or a hop on the
#: wrong arm, from the noise: the two end-to-end tests below measure once more (at most), since the
#: host's noise comes in spells (2026-12-06: the model alone went from 12.3 to 19.3 ms a request within
#: the hour, and a gRPC interval of ±7 ms came out of 3 blocks in CI). Of two runs, the one whose
#: widest interval is narrower is judged: chosen by width, never by its errors (2026-12-06 a second
#: run came out wider than the first: ±4 ms against ±1.2).
JUDGEABLE_HALF_MS = {"aa": 0.1, "known": 0.5}

#: Below this difference (ms) two arms count as equal: issue 14's precision target, the finest figure
#: orchbench claims. Without it, a quiet machine makes the A/A test a test of exact equality: in CI
#: (2026-12-07) three blocks gave a gRPC p50 interval of ±0.0013 ms around -0.010 ms. Two k6 clients of
#: one no-op gRPC server differed by -0.5 ± 0.3 µs (p50, 8 blocks of 4 s, 2026-12-07), so k6's two
#: connections are not the cause of ten; two connections to the model server may be, or chance.
AA_EQUAL_MS = 0.02


def _half(ci95):
    return (ci95[1] - ci95[0]) / 2


def _aa_run(tmp_path, attempt):
    out = tmp_path / f"out{attempt}"
    # six blocks (5 df), not three: with 2 df a t-interval widened threefold still misses by chance
    # 0.6 % of the time, 2.4 % for the four figures below; with 5 df 0.06 % (0.23 % for four)
    spec = tiny_spec(tmp_path, blocks=6, duration_s=1.5, aa_mode=True)
    proc = orchbench("run", "--spec", str(spec), "--out", str(out), "--quiet", timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_aa_run_ci_covers_zero(tmp_path):
    def widest(summary):
        return max(
            _half(summary[t]["overhead_ms"][m]["ci95"]) for t in ("rest", "grpc") for m in ("mean", "p50")
        )

    out, summary = _aa_run(tmp_path, 0)
    if widest(summary) > JUDGEABLE_HALF_MS["aa"]:
        again = _aa_run(tmp_path, 1)
        if widest(again[1]) < widest(summary):
            out, summary = again
    assert summary["aa_mode"] is True
    for transport in ("rest", "grpc"):
        res = summary[transport]
        assert "A/A copy" in res["arms"]["with"]["verified"]
        # both arms are the same endpoint (shared model): the "with" record starts no process
        rec = json.loads((out / "state" / "deploy" / f"{transport}-with.json").read_text())
        assert rec["details"]["processes"] == [] and rec["details"]["aa_copy"] is True
        for metric in ("mean", "p50"):
            est = res["overhead_ms"][metric]["estimate"]
            lo, hi = res["overhead_ms"][metric]["ci95"]
            assert lo < hi
            # A 95 % CI misses 0 in 1 run of 20 by design; widened threefold (for 6 blocks a ~99.94 %
            # t-interval) and stretched by what counts as equal, a miss means a real difference between
            # identical arms, not bad luck.
            half = (hi - lo) / 2
            low, high = lo - 2 * half - AA_EQUAL_MS, hi + 2 * half + AA_EQUAL_MS
            assert low <= 0.0 <= high, f"A/A {transport} {metric}: CI [{lo}, {hi}]"
            # The estimate stays below the smallest hop measured here (nginx, ~0.2 ms): a hop put on
            # one of the two names would fail this. The bound is not tighter because here one
            # request takes ~10 ms with a 2 ms standard deviation (EfficientNet-Lite0 on one pinned
            # core), so 6 blocks of 1.5 s give a per-metric standard error of about 0.02-0.06 ms, more on a
            # busy machine: the earlier bound of 0.1 ms failed identical arms (seen: 0.12, 0.17 ms;
            # in a noisy spell, with intervals of ±0.3-0.5 ms, 0.28 and 0.36 ms: hence the rerun above).
            assert abs(est) <= 0.2, f"A/A {transport} {metric}: {est} ms between identical arms"


@pytest.mark.slow
@pytest.mark.parametrize("design", ["interleaved", pytest.param("runs", marks=pytest.mark.full)])
def test_known_answer_injected_delay_is_recovered(tmp_path, design):
    """The real thing, short: 2 ms injected into the reference orchestrator (REST through the HTTP
    forwarder, gRPC through the HTTP/2 forwarder) comes back within 1 ms, and the interval, widened
    threefold, covers it: a delay that is missing (0), applied twice (4) or to the wrong arm (-2) fails.
    interleaved (make test): one run, the baseline, the reference arm (REFERENCE_MS, 5 ms) and an arm at 5
    + 2 ms; runs (the full suite): a run at 2 ms and one at 0. Four blocks of 3 s. This is a test of the
    chain, not of its precision (that is `orchbench calibrate`'s, measured on a quiet machine in
    benchmarks/README.md: within 0.004-0.10 ms): here, with other test runs loading the machine (load
    average ~3.7), one run recovered 1.38 ms (standard error 0.50 ms, p50 jumping between the modes of a
    loaded machine's latency), and in CI a run of the earlier design 2.37 ms (0.16 ms). A first run too
    wide to judge (JUDGEABLE_HALF_MS) is measured once more; the narrower is judged."""
    # four blocks (3 df) of 3 s: with 2 df a t-interval widened threefold misses by chance 0.6 % of
    # the time per transport, with 3 df 0.24 %
    spec = tiny_spec(tmp_path, blocks=4, duration_s=3)

    def calibrate(cal):
        proc = orchbench(
            "calibrate", "--delays", "2", "--spec", str(spec), "--out", str(cal), "--json",
            "--design", design, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    def widest(rows):
        return max(_half(r["ci95"]) for r in rows)

    cal = tmp_path / "cal"
    rows = calibrate(cal)
    if widest(rows) > JUDGEABLE_HALF_MS["known"]:
        again = calibrate(tmp_path / "cal-again")
        if widest(again) < widest(rows):
            cal, rows = tmp_path / "cal-again", again
    assert {r["transport"] for r in rows} == {"rest", "grpc"}
    for row in rows:
        assert row["injected_ms"] == 2.0
        assert abs(row["recovered_ms"] - 2.0) <= 1.0, row
        lo, hi = row["ci95"]
        assert lo < hi, row
        half = (hi - lo) / 2
        # stretched by what calibration counts as recovered (0.05 ms): on a quiet machine the
        # interval can be narrower than the error calibration tolerates (as AA_EQUAL_MS for A/A)
        assert lo - 2 * half - 0.05 <= 2.0 <= hi + 2 * half + 0.05, row
    saved = json.loads((cal / "calibration.json").read_text())
    assert [{k: r[k] for k in rows[0]} for r in saved] == rows
    assert [r["metric"] for r in saved] == ["p50", "p50", "mean", "mean"]  # both figures, p50 first
    assert all({"se_ms", "df", "covers", "passed"} <= set(r) for r in saved)
    assert {r["design"] for r in saved} == {design}
    if design == "interleaved":  # one run: the baseline, the reference (5 ms) and 5 + 2 ms, interleaved
        run = cal / "interleaved"
        assert [r["arm"] for r in saved] == ["plus-2000us"] * 4
        for transport in ("rest", "grpc"):
            delays = {
                json.loads((run / "state" / "deploy" / f"{transport}-{arm}.json").read_text())["details"][
                    "inject_delay_ms"
                ]
                for arm in ("ref", "plus-2000us")
            }
            assert delays == {REFERENCE_MS, REFERENCE_MS + 2.0} == {5.0, 7.0}
            # k6 walked a cycle in which every arm follows every ordered pair of arms once (recorded
            # in each arm's meta)
            raw = run / "tasks" / f"load-{transport}-b0" / "fs" / "out" / "raw"
            rot = json.loads((raw / "ref" / "meta.json").read_text())["rotation"]
            n = len(rot)
            seen = {(rot[(i - 2) % n], rot[(i - 1) % n], rot[i]) for i in range(n)}
            arms = ("without", "ref", "plus-2000us")
            assert n == 27 and seen == set(itertools.product(arms, repeat=3)), rot
