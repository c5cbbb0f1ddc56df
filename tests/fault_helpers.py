"""The `orchbench run` subprocess a fault test breaks on purpose, and what it checks afterwards: one
error line, no process left (recorded servers and everything in their process groups, or any server /
k6 / step process naming the run's folder or ports), and the raw artifacts of finished blocks kept.
Used by tests/test_faults.py (the seed's two arms) and tests/test_proxy_faults.py (nginx, HAProxy)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchbench.core.spec import load_spec
from results_schema import load_summary
from results_schema.samples import load_samples
from serving.runtime import free_port
from tests.helpers import ROOT

RUN_TIMEOUT_S = 120.0  # one tiny run takes ~30 s on 2 cores; every wait below has a deadline
#: Blocks for a run that must get through its load but whose blocks are not what a test is about
#: (the fault comes after them, or the run is the one after a fault): 1 s measured, no warm-up. A run
#: broken mid-load keeps the default 1 + 2 s, so the fault lands while k6 runs.
QUICK_BLOCKS: dict[str, Any] = {"duration_s": 1, "warmup_s": 0}


# --------------------------------------------------------------------------------------------------
# helpers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.05,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s` (or if `proc` exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = predicate()
            if value:
                return value
            pytest.fail(f"orchbench exited ({proc.returncode}) before {what}")
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@dataclass
class Run:
    """One `orchbench run` subprocess with its spec, output folder and ports."""

    tmp: Path
    transport: str = "rest"
    blocks: int = 2
    interleave: str = "auto"
    duration_s: float = 2
    warmup_s: float = 1
    extra: dict[str, Any] = field(default_factory=dict)
    out: Path = field(init=False)
    spec_path: Path = field(init=False)
    ports: dict[str, int] = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = self.tmp / "out"
        self.spec_path = self.tmp / "spec.yaml"
        self.stderr_path = self.tmp / "orchbench.stderr"
        self.tmp.mkdir(parents=True, exist_ok=True)
        ports: list[int] = []
        while len(ports) < 3:
            p = free_port()
            if p not in ports:
                ports.append(p)
        self.ports = {"with": ports[0], "without": ports[1], "model_behind_orchestrator": ports[2]}
        spec: dict[str, Any] = {
            "name": "faults",
            "transports": [self.transport],
            "load": {
                "workers": 1,
                "duration_s": self.duration_s,
                "warmup_s": self.warmup_s,
                "timeout_s": 5,
                "interleave": self.interleave,
            },
            "blocks": self.blocks,
            "local": {"ports": self.ports, "ready_timeout_s": 60},
            "floor": False,  # no fault here is about the floor step (tests/test_floor.py is)
            **self.extra,
        }
        self.spec_path.write_text(yaml.safe_dump(spec))

    # running ---------------------------------------------------------------------------------------
    def start(self, out: Path | None = None, wait: bool = False) -> subprocess.Popen[bytes]:
        """`orchbench run` on this spec (`wait`: with --wait, queueing behind a run holding the machine)."""
        if out is not None:
            self.out = out
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchbench.cli",
                    "run",
                    "--spec",
                    str(self.spec_path),
                    "--out",
                    str(self.out),
                    *(["--wait"] if wait else []),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # so a failed test can kill whatever is left of it
            )
        return self.proc

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def started(self, task_prefix: str) -> str | None:
        """Name of the first task starting with `task_prefix` the runner reported starting, if any."""
        for line in self.stderr().splitlines():
            parts = line.split()
            if parts[:2] == ["[orchbench]", "start"] and parts[2].startswith(task_prefix):
                return parts[2]
        return None

    def wait_started(self, task_prefix: str, timeout_s: float = 90) -> str:
        return str(
            wait_for(f"task {task_prefix}* to start", lambda: self.started(task_prefix), timeout_s, self.proc)
        )

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None and self.proc.poll() is None, "orchbench is no longer running"
        os.kill(self.proc.pid, sig)

    # state -----------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.out / "state" / "deploy").glob("*.json")):
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(path.read_text()))
        return out

    def recorded_procs(self) -> list[dict[str, Any]]:
        return [p for rec in self.records() for p in rec["details"]["processes"]]

    def server_pid(self, arm: str, role: str) -> int | None:
        rec = self.out / "state" / "deploy" / f"{self.transport}-{arm}.json"
        if not rec.exists():
            return None
        for p in json.loads(rec.read_text())["details"]["processes"]:
            if p["role"] == role:
                return int(p["pid"])
        return None

    def k6_pid(self, task: str) -> int | None:
        needle = str(self.out / "tasks" / task)
        for pid in _all_pids():
            cmd = _cmdline(pid)
            if needle in cmd and "k6" in cmd and " run " in cmd and "hera" not in cmd:
                return pid
        return None

    def samples_flowing(self, task: str) -> bool:
        """k6 of `task` has written request rows (it is mid-load, past its start-up)."""
        csv = self.out / "tasks" / task / "fs" / "out" / "raw" / "k6-samples.csv"
        try:
            return csv.stat().st_size > 4096
        except OSError:
            return False

    def leftover_pids(self) -> dict[int, str]:
        """Processes of this run still alive: recorded servers and any process in their process
        groups (nginx's workers outlive a killed master), and any server / proxy / k6 / step process
        whose command line names this run's folder or one of its ports. pid -> description."""
        found: dict[int, str] = {}
        groups = {int(p["pgid"]): str(p["role"]) for p in self.recorded_procs() if p.get("pgid")}
        for p in self.recorded_procs():
            if _alive(int(p["pid"])) and _cmdline(int(p["pid"])).split() == p["cmdline"]:
                found[int(p["pid"])] = f"recorded {p['role']}"
        for pid in _all_pids():
            with contextlib.suppress(OSError):
                if os.getpgid(pid) in groups and _alive(pid) and pid != os.getpid():
                    found.setdefault(pid, f"in the group of recorded {groups[os.getpgid(pid)]}")
        port_words = {str(p) for p in self.ports.values()} | {f"127.0.0.1:{p}" for p in self.ports.values()}
        for pid in _all_pids():
            if pid == os.getpid() or (self.proc is not None and pid == self.proc.pid) or not _alive(pid):
                continue
            cmd = _cmdline(pid)
            words = set(cmd.split())
            serving = any(
                w in cmd for w in ("serving.model_server", "serving.orchestrator", "nginx", "haproxy")
            )
            k6 = any(w.endswith("/k6") or w == "k6" for w in words)
            if (serving or k6) and (str(self.out) in cmd or words & port_words):
                found[pid] = cmd[:200]
            elif str(self.tmp) in cmd and "hera.workflows.runner" in cmd:
                found[pid] = f"step {cmd[:200]}"
        return found

    def leftovers(self) -> list[str]:
        return [f"pid {pid}: {what}" for pid, what in self.leftover_pids().items()]

    def kill_everything(self) -> None:
        """Finalizer: whatever this test started and is still there, by pid."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # assertions ------------------------------------------------------------------------------------
    def assert_failed_cleanly(self, rc: int, expect_codes: tuple[int, ...], *needles: str) -> str:
        err = self.stderr()
        assert rc != 0, f"exit 0 after a fault; stderr:\n{err}"
        assert rc in expect_codes, f"exit {rc}, expected one of {expect_codes}; stderr:\n{err}"
        assert "Traceback" not in err, err
        errors = [
            line
            for line in err.splitlines()
            if line.startswith(("orchbench: error:", "orchbench: interrupted"))
        ]
        assert len(errors) == 1, f"expected exactly one error line, got {errors}; stderr:\n{err}"
        message = errors[0]
        assert len(message) > len("orchbench: error: ") + 10, message
        for needle in needles:
            assert needle in message, f"{needle!r} not in {message!r}"
        left = self.leftovers()
        assert not left, f"processes left behind: {left}"
        return message

    def arm_folders(self, task: str) -> list[Path]:
        """The folders holding meta.json of a load task's artifact (a paired task: one per arm)."""
        folder = self.out / "raw" / task
        if (folder / "meta.json").exists():
            return [folder]
        return sorted(arm.parent for arm in folder.glob("*/meta.json"))

    def metas(self, task: str) -> list[dict[str, Any]]:
        return [json.loads((f / "meta.json").read_text()) for f in self.arm_folders(task)]

    def assert_raw_kept(self, finished: list[str]) -> None:
        """Every load task that reported done before the fault has readable raw artifacts in OUT/raw."""
        for folder in [f for task in finished for f in self.arm_folders(task)]:
            meta = json.loads((folder / "meta.json").read_text())
            assert meta["status"] == "ok", meta
            summary = load_summary(folder / meta["raw"])
            assert summary.tool == "k6" and summary.requests > 0
            samples = load_samples(folder / meta["samples"], measure_only=True)
            assert len(samples) > 0
            assert len(samples) == summary.requests, (len(samples), summary.requests)

    def done_tasks(self, prefix: str = "load-") -> list[str]:
        return [
            line.split()[2]
            for line in self.stderr().splitlines()
            if line.split()[:2] == ["[orchbench]", "done"] and line.split()[2].startswith(prefix)
        ]


def load_tasks(run: Run) -> list[str]:
    """The load-test tasks in the order the runner executes them (blocks in order; with interleave
    block, the arms as drawn), as the pipeline names them."""
    from pipelines.benchmark import _load_tasks

    return [
        name for name, transport, *_ in _load_tasks(load_spec(run.spec_path)) if transport == run.transport
    ]
