"""nginx and HAProxy arms of the local platform dying mid-run (`orchbench run` as a subprocess, 3
blocks): one line naming the arm, exit 1, every process of the run gone (psutil), the first block's
raw artifacts kept and comparable on their own. And nginx's master alone killed: its worker goes on
serving, so the run completes, and teardown stops the masterless worker too. A proxy arm whose
answers fail its check: exit 1 before any block. A local spec that names an arm twice or no
baseline: exit 2 before anything starts."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from orchbench.core.platform import proxies
from tests.fault_helpers import Run, load_tasks, wait_for
from tests.helpers import orchbench

#: kind x transport; make test runs nginx over REST and HAProxy over gRPC (every proxy and every
#: transport once), the two other pairs are `full` (make test-full): same code paths, ~70 s a run.
MATRIX = [
    pytest.param(
        k,
        t,
        marks=[pytest.mark.skipif(not proxies.available(k), reason=f"apt-get install {k}")]
        + ([] if (k, t) in (("nginx", "rest"), ("haproxy", "grpc")) else [pytest.mark.full]),
        id=f"{k}-{t}",
    )
    for k in proxies.KINDS
    for t in ("rest", "grpc")
]


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def factory(**kw: Any) -> Run:
        run = Run(tmp_path / f"run{len(runs)}", **kw)
        runs.append(run)
        return run

    yield factory
    for run in runs:
        run.kill_everything()


def _arms(kind: str) -> list[dict[str, Any]]:
    return [{"name": "direct", "baseline": True, "hop": "model"}, {"name": kind, "hop": kind}]


def _proxy_record(run: Run, kind: str) -> dict[str, Any]:
    rec = json.loads((run.out / "state" / "deploy" / f"{run.transport}-{kind}.json").read_text())
    return next(p for p in rec["details"]["processes"] if p["role"] == kind)


def _psutil_leftovers(run: Run, pgids: set[int]) -> list[str]:
    """Independently of the harness: any live process in a recorded process group or naming the run."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(p.pid) in pgids or str(run.out) in " ".join(p.info["cmdline"] or []):
                found.append(f"{p.pid}: {' '.join(p.info['cmdline'] or [])[:160]}")
        except (psutil.Error, OSError):
            continue
    return found


def _compare_block(folder: Path, arm: str) -> dict[str, Any]:
    proc = orchbench(
        "compare", "--with", str(folder / arm / "k6-summary.json"),
        "--without", str(folder / "direct" / "k6-summary.json"),
        "--with-samples", str(folder / arm / "k6-samples.csv"),
        "--without-samples", str(folder / "direct" / "k6-samples.csv"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "transport"), MATRIX)
def test_proxy_killed_after_the_first_block(make_run: Callable[..., Run], kind: str, transport: str) -> None:
    run = make_run(transport=transport, blocks=3, extra={"arms": _arms(kind)})
    order = load_tasks(run)
    assert len(order) == 3, order
    run.start()
    run.wait_started(order[1])
    wait_for(f"{order[1]} mid-load", lambda: run.samples_flowing(order[1]), 60, run.proc)
    record = _proxy_record(run, kind)
    assert record["pid"] == record["pgid"]
    # the proxy dies: HAProxy is one process; nginx's master and its worker, its whole group
    if kind == "haproxy":
        os.kill(int(record["pid"]), signal.SIGKILL)
    else:
        os.killpg(int(record["pgid"]), signal.SIGKILL)
    rc = run.finish()
    msg = run.assert_failed_cleanly(
        rc, (1,), f"step {order[1]} failed", f"k6 ({kind} arm)", "requests failed"
    )
    assert "[orchbench] done  cleanup" in run.stderr(), run.stderr()
    pgids = {int(p["pgid"]) for p in run.recorded_procs()}
    assert not _psutil_leftovers(run, pgids), _psutil_leftovers(run, pgids)
    # block 1 of 3 is kept, readable and comparable; block 2 kept and marked failed; no block 3
    assert run.done_tasks() == order[:1], msg
    run.assert_raw_kept(order[:1])
    assert sorted(f.name for f in run.arm_folders(order[0])) == sorted(["direct", kind])
    assert [m["status"] for m in run.metas(order[1])] == ["failed", "failed"]
    assert not (run.out / "raw" / order[2]).exists()
    res = _compare_block(run.out / "raw" / order[0], kind)
    assert res["source"] == "samples" and len(res["ci95_ms"]["p50"]) == 2, res
    # the run directory itself is not a finished run: `orchbench report` says so in one line
    rep = orchbench("report", str(run.out))
    assert rep.returncode == 2 and rep.stderr.count("\n") == 1 and "no summary.json" in rep.stderr


@pytest.mark.slow
@pytest.mark.skipif(not proxies.available("nginx"), reason="apt-get install nginx")
def test_nginx_master_killed_its_worker_serves_on_and_is_torn_down(make_run: Callable[..., Run]) -> None:
    # no warm-up: the kill still lands mid-block (k6 writes its first rows 1 s into a 2 s block)
    run = make_run(blocks=3, warmup_s=0, extra={"arms": _arms("nginx")})
    order = load_tasks(run)
    run.start()
    run.wait_started(order[1])
    wait_for(f"{order[1]} mid-load", lambda: run.samples_flowing(order[1]), 60, run.proc)
    record = _proxy_record(run, "nginx")
    workers = [p for p in proxies.group_members(int(record["pgid"])) if p != int(record["pid"])]
    assert workers, "nginx has no worker"
    os.kill(int(record["pid"]), signal.SIGKILL)
    wait_for("the master gone", lambda: proxies.orphans(record), 10)
    rc = run.finish()
    assert rc == 0, run.stderr()  # the worker forwarded every request: all three blocks measured
    assert (run.out / "summary.json").exists()
    assert not [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not _psutil_leftovers(run, {int(record["pgid"])})
    assert not run.leftovers(), run.leftovers()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "transport"), MATRIX)
def test_a_proxy_arm_failing_its_check_stops_before_the_load(
    make_run: Callable[..., Run], kind: str, transport: str
) -> None:
    """The arm's answers must carry what this proxy does not (the other proxy's marker): refused by
    the arm's verification, one line naming the arm and the header, the proxy torn down."""
    other = next(k for k in proxies.KINDS if k != kind)
    arms = _arms(kind)
    arms[1]["verify"] = [{"header": proxies.HOP_HEADER, "value": other}]
    run = make_run(transport=transport, extra={"arms": arms})
    run.start()
    rc = run.finish()
    msg = run.assert_failed_cleanly(rc, (1,), f"arm '{kind}'", f"{proxies.HOP_HEADER}={kind}", other)
    assert not run.done_tasks() and run.started("load-") is None, msg
    pgids = {int(p["pgid"]) for p in run.recorded_procs()}
    assert pgids and not _psutil_leftovers(run, pgids), _psutil_leftovers(run, pgids)


def _local_spec(tmp: Path, arms: list[dict[str, Any]]) -> Path:
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "arms", "transports": ["rest"], "blocks": 1, "arms": arms}))
    return path


@pytest.mark.parametrize(
    ("arms", "needle"),
    [
        ([{"name": "a", "baseline": True, "hop": "model"}, {"name": "a", "hop": "nginx"}], "named twice"),
        ([{"name": "a", "hop": "model"}, {"name": "b", "hop": "haproxy"}], "baseline: true, got none"),
    ],
    ids=["named-twice", "no-baseline"],
)
def test_local_spec_with_bad_arms_is_exit_2_before_anything_starts(
    tmp_path: Path, arms: list[dict[str, Any]], needle: str
) -> None:
    out = tmp_path / "out"
    proc = orchbench("run", "--spec", str(_local_spec(tmp_path, arms)), "--out", str(out), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("orchbench: error:") and needle in lines[0], lines
    assert not out.exists()
