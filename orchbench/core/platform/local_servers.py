"""The server processes of a local arm: started (the model server, the reference orchestrator, KServe's
model server, nginx or HAProxy), each in its own session so it outlives the step that started it,
and recorded (pid, pgid, cmdline, start time, port, log); checked alive while the arm is awaited; and
stopped, a recorded group signalled only while its leader is still the process we started.
Used by LocalPlatform (local.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchbench.core.arms import ArmName, Transport
from orchbench.core.errors import PlatformError
from orchbench.core.platform.local_procs import (
    CHILDREN,
    exit_note,
    is_gone,
    is_ours,
    kill_spawned,
    log_tail,
    proc_cmdline,
    proc_starttime,
    proc_state,
)

PROXY_KINDS = ("nginx", "haproxy")  # orchbench.core.platform.proxies.KINDS (imported when used)
_EXIT_BIND = 3  # serving.runtime.EXIT_BIND (not imported: keeps this module free of grpc/aiohttp)


@dataclass(frozen=True)
class Servers:
    """Starts an arm's processes with this platform's settings: `python` (the bundled servers'),
    `host` to bind, `impl` (protocol implementations), the orchestrator's injected delay, and
    `run_dir` (proxies' configurations)."""

    python: str
    host: str
    run_dir: Path
    inject_delay_ms: float = 0.0
    impl: dict[str, str] = field(default_factory=dict)

    def spawn(
        self,
        role: str,
        args: list[str],
        log: Path,
        python: str | None = None,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """`python -m serving.<role> args` in its own session, output into `log`; its record."""
        cmd = [python or self.python, "-m", f"serving.{role}", *args]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
                start_new_session=True,
                env={
                    **(os.environ if env is None else env),
                    "PYTHONUNBUFFERED": "1",
                    "ORCHBENCH_EXIT_FILE": str(log.with_suffix(".exit")),
                },
            )
        CHILDREN[proc.pid] = proc
        try:
            starttime = proc_starttime(proc.pid)
            for _ in range(50):  # wait for the exec so the recorded cmdline can be checked later
                if proc_cmdline(proc.pid) == cmd or proc_state(proc.pid) in (None, "Z"):
                    break
                time.sleep(0.01)
        except BaseException:  # interrupted before anything recorded it: stop it here
            kill_spawned([proc.pid])
            raise
        return {
            "role": role,
            "pid": proc.pid,
            "pgid": proc.pid,
            "cmdline": cmd,
            "starttime": starttime,
            "log": str(log),
        }

    def spawn_proxy(
        self,
        procs: list[dict[str, Any]],
        kind: str,
        arm: ArmName,
        transport: Transport,
        public: int,
        model_port: int,
        cpus: list[int] | None,
    ) -> None:
        """nginx or HAProxy on `public`, in front of the model on `model_port`, pinned like the
        servers; started in its own session so it outlives this step, recorded like them."""
        from orchbench.core.platform.proxies import ProxySpec, spawn_proxy

        upstream = f"{self.host}:{model_port}"
        rest = transport == "rest"
        spec = ProxySpec(
            kind,
            rest_port=public if rest else None,
            upstream_rest=upstream if rest else None,
            grpc_port=None if rest else public,
            upstream_grpc=None if rest else upstream,
            cpus=cpus,
            host=self.host,
        )
        proxy = spawn_proxy(spec, self.run_dir / "proxies" / f"{arm}-{transport}")
        CHILDREN[proxy.pid] = proxy.popen
        procs.append(
            {
                "role": kind,
                "pid": proxy.pid,
                "pgid": proxy.pid,
                "cmdline": proxy.cmd,
                "starttime": None,
                "log": str(proxy.log),
                "port": public,
            }
        )
        proxy.wait_ready()
        procs[-1] = proxy.record()

    def spawn_arm(
        self,
        procs: list[dict[str, Any]],
        name: str,
        arm: ArmName,
        transport: Transport,
        model_args: list[str] | None,
        flag: str,
        public: int,
        model_port: int,
        pin: list[str],
        logs: Path,
        stamp: str,
        orchestrator: bool | None = None,
        kserve_python: str | None = None,
    ) -> None:
        """Start the arm's processes: its model server (unless `model_args` is None: the model is
        shared; KServe's with `kserve_python`) and, for an orchestrator arm ("with"), the
        orchestrator in front of the model on `model_port`."""
        if orchestrator is None:
            orchestrator = arm == "with"
        if model_args is not None:
            model_log = logs / f"{name}-{arm}-{transport}-model-{stamp}.log"
            if kserve_python is not None:
                procs.append(self.spawn_kserve(kserve_python, model_args, model_log))
            else:
                procs.append(self.spawn("model_server", model_args, model_log))
            procs[-1]["port"] = model_port
        if orchestrator:
            orch_args = [
                flag,
                str(public),
                "--host",
                self.host,
                f"--upstream-{transport}",
                f"{self.host}:{model_port}",
                "--inject-delay-ms",
                repr(self.inject_delay_ms),
                *([f"--{transport}-impl", self.impl[transport]] if transport in self.impl else []),
                *pin,
            ]
            procs.append(
                self.spawn(
                    "orchestrator",
                    orch_args,
                    logs / f"{name}-{arm}-{transport}-orchestrator-{stamp}.log",
                )
            )
            procs[-1]["port"] = public

    def spawn_kserve(self, python: str, model_args: list[str], log: Path) -> dict[str, Any]:
        """KServe's model server, with `python` of its own virtual environment, on the bundled
        server's flags, serving the same cached ONNX file."""
        from orchbench.core.platform import kserve_local
        from serving.model import build_model

        args = [*model_args, "--model-path", str(build_model())]
        env = kserve_local.environment()
        return self.spawn(kserve_local.MODULE.removeprefix("serving."), args, log, python, env)


def check_alive(procs: list[dict[str, Any]]) -> None:
    """PlatformError naming the first recorded process that is no longer ours: could not bind its
    port, or died (how, and its log's tail)."""
    for proc in procs:
        if not is_ours(proc):
            note = exit_note(proc)
            tail = log_tail(proc["log"])
            port = proc.get("port")
            if (
                "address already in use" in tail.lower()
                or "cannot listen" in tail.lower()
                or (note == f"exit code {_EXIT_BIND}")
            ):
                raise PlatformError(
                    f"{proc['role']} (pid {proc['pid']}) could not bind port {port}: {note}; log: {tail}"
                )
            raise PlatformError(f"{proc['role']} (pid {proc['pid']}, port {port}) died ({note}); log: {tail}")


def stop(procs: list[dict[str, Any]], grace_s: float = 5.0) -> None:
    """SIGTERM to each recorded group still ours (the last started first: the orchestrator before
    its model), SIGKILL after `grace_s`; PlatformError if one outlives that."""
    if any(p.get("role") in PROXY_KINDS for p in procs):
        from orchbench.core.platform.proxies import stop_orphans

        for proc in procs:  # nginx's workers outlive a killed master: not left behind
            stop_orphans(proc)
    for proc in reversed(procs):  # the orchestrator first, then the model
        if is_ours(proc):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc["pgid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        while not is_gone(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        if is_ours(proc):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(proc["pgid"]), signal.SIGKILL)
        kill_deadline = time.monotonic() + 5.0
        while not is_gone(proc) and time.monotonic() < kill_deadline:
            time.sleep(0.02)
        if not is_gone(proc):
            raise PlatformError(f"{proc['role']} (pid {proc['pid']}) is still running after SIGKILL")
