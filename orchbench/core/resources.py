"""What an arm's own processes (orchestrator, proxy) cost during a window: CPU seconds and peak RSS,
from /proc through psutil, reported as CPU ms per 1000 requests and MB.

:class:`ProcessSampler` takes the root pids of an arm (and, with `children`, every descendant it
sees) and samples them in a background thread every `interval_s`:

- **CPU**: user + system seconds of each process, as the difference between its last reading and
  its reading at the window's start (0 for a process born inside the window). A process that exits
  inside the window counts up to its last sample (the error is at most one interval of its CPU);
  the `children_*` counters of reaped children are not used (they would count a child's whole life,
  also before the window).
- **Peak RSS**: the highest sum of the set's resident set sizes at one sample (what the arm held in
  memory at once), and each process's own peak. A peak shorter than the interval can be missed.

`start()` and `stop()` take a reading themselves, so the window is exactly [start, stop] for every
process alive at both ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class ResourceUsage:
    """CPU and memory of a set of processes over one window."""

    cpu_s: float
    peak_rss_bytes: int
    wall_s: float
    samples: int
    pids: tuple[int, ...]
    per_process_cpu_s: dict[int, float] = field(default_factory=dict)
    per_process_peak_rss_bytes: dict[int, int] = field(default_factory=dict)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / MB

    @property
    def cpu_utilisation(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy throughout)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def cpu_ms_per_1000(self, requests: int) -> float | None:
        """CPU milliseconds per 1000 requests served in the window; None without requests."""
        if requests <= 0:
            return None
        return self.cpu_s * 1000.0 / requests * 1000.0

    def to_dict(self, requests: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpu_s": round(self.cpu_s, 6),
            "peak_rss_mb": round(self.peak_rss_mb, 3),
            "wall_s": round(self.wall_s, 6),
            "cpu_utilisation": round(self.cpu_utilisation, 6),
            "samples": self.samples,
            "pids": list(self.pids),
        }
        if requests is not None:
            per = self.cpu_ms_per_1000(requests)
            out["requests"] = requests
            out["cpu_ms_per_1000_requests"] = None if per is None else round(per, 6)
        return out


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class ProcessSampler:
    """Samples CPU time and RSS of `pids` (and their descendants) between `start()` and `stop()`.
    Also a context manager: `with ProcessSampler(pids) as s: ...` then `s.usage`."""

    def __init__(self, pids: Iterable[int], interval_s: float = 0.1, children: bool = True) -> None:
        self.root_pids = tuple(dict.fromkeys(int(p) for p in pids))
        if not self.root_pids:
            raise ValueError("ProcessSampler needs at least one pid")
        if not interval_s > 0:
            raise ValueError(f"interval must be > 0 s, got {interval_s}")
        self.interval_s = interval_s
        self.children = children
        self._procs: dict[int, psutil.Process] = {}
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._peak: dict[int, int] = {}
        self._peak_sum = 0
        self._samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.usage: ResourceUsage | None = None

    # -- the set of processes -----------------------------------------------------------------------

    def _discover(self, at_start: bool) -> None:
        """Add the roots (once) and, with `children`, every live descendant not yet tracked."""
        found: list[psutil.Process] = []
        for pid in self.root_pids:
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
            found.append(proc)
            if self.children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    found += proc.children(recursive=True)
        for proc in found:
            if proc.pid in self._procs:
                continue
            try:
                cpu = _cpu(proc)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            self._procs[proc.pid] = proc
            # Alive at the start: its CPU so far is before the window. First seen later: every
            # descendant alive at the start was seen then, so it was born inside the window and all
            # of its CPU counts. (Not decided from create_time(): that is boot_time(), a whole
            # second in /proc/stat, plus ticks, and here it put a child 0.6 s before the start it
            # followed, so its start-up CPU was dropped.)
            self._base[proc.pid] = cpu if at_start else 0.0
            self._last[proc.pid] = cpu

    def _sample(self, at_start: bool = False) -> None:
        with self._lock:
            self._discover(at_start)
            rss_sum = 0
            for pid, proc in list(self._procs.items()):
                try:
                    with proc.oneshot():
                        cpu = _cpu(proc)
                        rss = int(proc.memory_info().rss)
                        if proc.status() == psutil.STATUS_ZOMBIE:
                            raise psutil.ZombieProcess(pid)
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue  # gone: keep its last reading
                self._last[pid] = cpu
                self._peak[pid] = max(self._peak.get(pid, 0), rss)
                rss_sum += rss
            self._peak_sum = max(self._peak_sum, rss_sum)
            self._samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    @property
    def samples_taken(self) -> int:
        """Readings so far (the start's included): lets a caller wait for one after an event."""
        with self._lock:
            return self._samples

    # -- the window ---------------------------------------------------------------------------------

    def start(self) -> ProcessSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._t0 = time.monotonic()
        self._sample(at_start=True)
        self._thread = threading.Thread(target=self._run, name="orchbench-resources", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ResourceUsage:
        if self._thread is None:
            raise RuntimeError("sampler not started")
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._t0
        with self._lock:
            per_cpu = {pid: max(0.0, self._last[pid] - self._base[pid]) for pid in self._procs}
            self.usage = ResourceUsage(
                cpu_s=sum(per_cpu.values()),
                peak_rss_bytes=self._peak_sum,
                wall_s=wall,
                samples=self._samples,
                pids=tuple(sorted(self._procs)),
                per_process_cpu_s=per_cpu,
                per_process_peak_rss_bytes=dict(self._peak),
            )
        return self.usage

    def __enter__(self) -> ProcessSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def measure(
    pids: Iterable[int], seconds: float, interval_s: float = 0.1, children: bool = True
) -> ResourceUsage:
    """Sample `pids` for `seconds` (blocking)."""
    sampler = ProcessSampler(pids, interval_s, children).start()
    time.sleep(seconds)
    return sampler.stop()
