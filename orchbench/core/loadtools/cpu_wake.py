"""Keeping idle CPUs from sleeping deeply while a load test runs: a PM QoS request on the kernel's
`/dev/cpu_dma_latency` (Documentation/power/pm_qos_interface.rst), as tuned's latency-performance
profile and cyclictest make it.

Why: a CPU that idles halts, and on a virtual machine waking it again costs tens of microseconds
that vary from one wake-up to the next (this machine: KVM, cpuidle driver `haltpoll`, guest
halt-polling off). Every request of a closed-loop client at one worker waits idle for its answer,
so that cost lands on every latency measured, in the client and in each server on the path. While
the request holds, the cpuidle governor uses only idle states with an exit latency within
`latency_us` (0: the polling state, an idle CPU spins until it has work). Measured here
(benchmarks/README.md, "CPU wake-up"): k6's floor against a no-op server halved, and the
calibration's standard errors came out smaller in 15 of 16 paired comparisons; a wake-up that grows
with the length of the wait grew about as much with the request as without it. Idle CPUs spin at
full power for the length of the load test.

The request lasts exactly as long as the file stays open: `hold()` closes it on the way out, and
the kernel drops it when this process ends, however it ends. Nothing is left behind. The file is
root's (mode 0600); where it cannot be opened (not root, no such file: another OS, a container)
nothing is held, the run goes on, and the record says why.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

QOS_PATH = Path("/dev/cpu_dma_latency")


@contextlib.contextmanager
def hold(latency_us: int | None, path: Path = QOS_PATH) -> Iterator[dict[str, Any]]:
    """Hold the CPUs' wake-up latency at most `latency_us` µs while inside; yields the record for
    the run's provenance: `{"held": True, "latency_us": n}`, or `{"held": False, "reason": ...}`
    (also when `latency_us` is None: not asked for)."""
    if latency_us is None:
        yield {"held": False, "reason": "not asked for (load.cpu_wake_latency_us unset)"}
        return
    fd, why = _open(path)
    if fd is None:
        yield {"held": False, "latency_us": latency_us, "reason": why}
        return
    try:
        try:
            os.write(fd, struct.pack("=i", int(latency_us)))  # the kernel reads a 32-bit int (or text)
            record: dict[str, Any] = {"held": True, "latency_us": int(latency_us)}
        except OSError as exc:
            record = {"held": False, "latency_us": latency_us, "reason": f"{path}: {exc.strerror}"}
        yield record  # outside the handlers: an error inside the block is not chained to theirs
    finally:
        os.close(fd)


def _open(path: Path) -> tuple[int | None, str]:
    """(the file opened for writing, "") or (None, why not)."""
    try:
        return os.open(path, os.O_WRONLY), ""
    except OSError as exc:
        return None, f"cannot open {path}: {exc.strerror}"


def summarise(records: Iterable[Any]) -> dict[str, Any]:
    """The run's record (summary.json `cpu_wake`) from its load tests' records (meta.json
    `cpu_wake`): in how many of them the request held, at what latency, and why not where it did
    not. Load tests of before, which recorded nothing, count as `unrecorded`."""
    seen = list(records)
    known = [r for r in seen if isinstance(r, dict)]
    held = [r for r in known if r.get("held")]
    out: dict[str, Any] = {"held": len(held), "load_tests": len(seen)}
    latencies = sorted({int(r["latency_us"]) for r in held if isinstance(r.get("latency_us"), int)})
    if latencies:
        out["latency_us"] = latencies[0] if len(latencies) == 1 else latencies
    reasons = sorted({str(r["reason"]) for r in known if not r.get("held") and r.get("reason")})
    if reasons:
        out["not_held"] = reasons
    if len(known) < len(seen):
        out["unrecorded"] = len(seen) - len(known)
    return out


def line(record: Any) -> str:
    """One line for the terminal from summary.json's `cpu_wake` ("" when there is nothing to say)."""
    if not isinstance(record, dict) or not record.get("load_tests"):
        return ""
    held, total = int(record.get("held") or 0), int(record["load_tests"])
    why = "; ".join(str(r) for r in record.get("not_held") or [])
    if held == 0:
        return f"CPU wake-up latency not held ({why or 'not asked for'}): idle CPUs slept as they would"
    latency = record.get("latency_us")
    where = "all" if held == total else f"{held} of"
    out = f"CPU wake-up latency held at {latency} µs in {where} {total} load tests"
    return out + (f" (not in the others: {why})" if held < total and why else "")
