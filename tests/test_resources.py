"""CPU seconds and peak RSS of a set of processes during a window (psutil), against real busy child
processes with a known CPU burn (time.process_time) and a known allocation. No network."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from orchbench.core.resources import ProcessSampler, ResourceUsage, measure

BURN_S = 0.6
ALLOC_MB = 64

# Waits for a line, allocates and touches ALLOC_MB, burns BURN_S of its own CPU, then says
# "done <cpu in the burn> <cpu since birth>", both read from the kernel's per-process counters with
# os.times(), the ones psutil reads from /proc: the sampler's figure is compared with what the process
# itself counted, not with the burn's target (the burn loop times itself with process_time, another
# clock, and the child's interpreter start-up comes on top of it).
BUSY = textwrap.dedent(
    """
    import os, sys, time
    mb, burn = int(sys.argv[1]), float(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    c0 = os.times()
    blob = b"\\x01" * (mb * 1024 * 1024)
    t0 = time.process_time()
    while time.process_time() - t0 < burn:
        pass
    c1 = os.times()
    own = c1.user + c1.system
    print("done", round(own - (c0.user + c0.system), 3), round(own, 3), flush=True)
    sys.stdin.readline()
    """
)
TICK_S = 0.011  # /proc and times() count in clock ticks of 10 ms; two readings, each truncated

# Starts BUSY as its own child (inheriting stdin/stdout) and waits for it: it burns nothing itself.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    print("ready", flush=True)
    sys.stdin.readline()
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], "0", sys.argv[2]])
    child.wait()
    """
)


def _more_samples(sampler: ProcessSampler, n: int = 3, timeout_s: float = 30.0) -> None:
    """Wait until the sampler has taken `n` more readings. A fixed sleep was not enough in CI: on a busy
    machine the sampling thread did not run within 0.2 s, and the child's last reading was mid-burn."""
    target = sampler.samples_taken + n
    deadline = time.monotonic() + timeout_s
    while sampler.samples_taken < target:
        assert time.monotonic() < deadline, f"the sampler took no {n} readings in {timeout_s} s"
        time.sleep(0.01)


def _spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _say(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()


def _done(proc: subprocess.Popen[str]) -> tuple[float, float]:
    """Let BUSY burn; its own CPU readings (in the burn, since birth) from its "done" line."""
    _say(proc)
    assert proc.stdout is not None
    word, in_burn, total = proc.stdout.readline().split()
    assert word == "done"
    return float(in_burn), float(total)


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.close()
        proc.wait(timeout=10)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def test_usage_figures():
    u = ResourceUsage(cpu_s=0.6, peak_rss_bytes=96 * 1024 * 1024, wall_s=2.0, samples=20, pids=(1,))
    assert u.cpu_ms_per_1000(600) == pytest.approx(1000.0)
    assert u.cpu_ms_per_1000(2400) == pytest.approx(250.0)
    assert u.cpu_ms_per_1000(0) is None
    assert u.peak_rss_mb == 96.0
    assert u.cpu_utilisation == 0.3
    assert u.to_dict(requests=1200) == {
        "cpu_s": 0.6,
        "peak_rss_mb": 96.0,
        "wall_s": 2.0,
        "cpu_utilisation": 0.3,
        "samples": 20,
        "pids": [1],
        "requests": 1200,
        "cpu_ms_per_1000_requests": 500.0,
    }


def test_cpu_and_peak_rss_of_a_busy_process():
    proc = _spawn(BUSY, str(ALLOC_MB), str(BURN_S))
    try:
        sampler = ProcessSampler([proc.pid], interval_s=0.05).start()
        in_burn, _ = _done(proc)  # allocate, burn, done
        _more_samples(sampler)  # a few samples with the blob still resident
        usage = sampler.stop()
    finally:
        _finish(proc)
    assert in_burn >= BURN_S / 2  # the process did burn (its two clocks may differ by a few %)
    # what the process itself counted from the go line to done, plus waking up to read that line
    assert in_burn - TICK_S <= usage.cpu_s <= in_burn + 0.05
    assert ALLOC_MB <= usage.peak_rss_mb <= ALLOC_MB + 100
    assert usage.pids == (proc.pid,)
    assert usage.samples >= 3
    assert usage.cpu_ms_per_1000(600) == pytest.approx(usage.cpu_s * 1000 / 600 * 1000)


def test_cpu_before_the_window_is_not_counted():
    proc = _spawn(BUSY, "1", str(BURN_S))
    try:
        _done(proc)  # burns before the window
        usage = measure([proc.pid], seconds=0.3, interval_s=0.05)
    finally:
        _finish(proc)
    assert usage.cpu_s < 0.05


def test_children_are_counted_also_after_they_exit():
    parent = _spawn(PARENT, BUSY, str(BURN_S))
    try:
        sampler = ProcessSampler([parent.pid], interval_s=0.05).start()
        _say(parent)  # the parent starts the busy child, which says "ready" on the shared stdout
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        in_burn, since_birth = _done(parent)  # the child reads the line (shared stdin), burns, says done
        _more_samples(sampler)  # readings of the child after its burn, before it exits
        _say(parent)  # the child exits, then the parent
        parent.wait(timeout=10)
        usage = sampler.stop()
    finally:
        _finish(parent)
    assert len(usage.pids) == 2
    child_cpu = max(usage.per_process_cpu_s.values())
    assert in_burn >= BURN_S / 2
    # born inside the window: all of its CPU counts, interpreter start-up included, as it counted it
    # (plus what it spent after its reading: printing "done", reading a line, exiting)
    assert since_birth - TICK_S <= child_cpu <= since_birth + 0.03
    assert usage.cpu_s >= child_cpu


def test_without_children_only_the_roots_count():
    parent = _spawn(PARENT, BUSY, str(BURN_S))
    try:
        sampler = ProcessSampler([parent.pid], interval_s=0.05, children=False).start()
        _say(parent)
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        _done(parent)
        usage = sampler.stop()
    finally:
        _finish(parent)
    assert usage.pids == (parent.pid,)
    assert usage.cpu_s < 0.2  # the parent only started a process and waited


def test_a_process_gone_before_the_start_is_skipped():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    usage = measure([proc.pid], seconds=0.05, interval_s=0.01)
    assert (usage.cpu_s, usage.peak_rss_bytes, usage.pids) == (0.0, 0, ())


def test_bad_arguments():
    with pytest.raises(ValueError):
        ProcessSampler([])
    with pytest.raises(ValueError):
        ProcessSampler([1], interval_s=0)
    with pytest.raises(RuntimeError):
        ProcessSampler([1]).stop()
