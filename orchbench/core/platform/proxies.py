"""Real third-party proxies as local hops: nginx and HAProxy (Debian packages) in front of a model server.

Each proxy is configured from templates shipped as package data (`orchbench/data/proxies/*.tmpl`,
filled in with `string.Template`), rendered into a folder of the run, and started in the foreground
as a child process in its own session (process group), optionally pinned to CPUs with `taskset`:

    nginx  -g 'daemon off;' -p <folder> -c <folder>/nginx.conf    (a master and `workers` workers)
    haproxy -db -f <folder>/haproxy.cfg                           (one process, `workers` threads)

REST is HTTP/1.1 in and out with the upstream connection kept alive; gRPC is cleartext HTTP/2 on both
sides (nginx `grpc_pass`, HAProxy `proto h2`). Every answer carries the response header
`x-orchbench-hop: nginx|haproxy` (for gRPC an initial-metadata entry), so an arm can be verified.
Listeners bind `host` (127.0.0.1) only.

    spec = ProxySpec("nginx", rest_port=8100, upstream_rest="127.0.0.1:9000", cpus=[1])
    with start_proxy(spec, run_dir / "proxies" / "nginx") as proxy:   # waits until it accepts
        ...                                                            # proxy.record() for a run
    # stopped: SIGTERM to its process group, SIGKILL after the grace time, nothing left behind

A missing binary is `ProxyUnavailable` (a ConfigError, exit 2): one line naming what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from orchbench.core.errors import ConfigError, PlatformError
from orchbench.core.paths import DATA
from orchbench.core.platform.local_procs import (
    log_tail,
    port_free,
    proc_cmdline,
    proc_starttime,
    proc_state,
)
from orchbench.fsio import write_text

KINDS = ("nginx", "haproxy")
#: The response header (gRPC: initial metadata key) every answer through a proxy carries; its value
#: is the proxy's kind.
HOP_HEADER = "x-orchbench-hop"
TEMPLATES = DATA / "proxies"
#: Where Debian puts the binaries (not on a non-root user's PATH).
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_CONF_NAME = {"nginx": "nginx.conf", "haproxy": "haproxy.cfg"}


class ProxyUnavailable(ConfigError):
    """The proxy's binary (or taskset) is not installed; the message names the package."""


def find_binary(name: str, package: str | None = None) -> str:
    """The path of `name` (PATH, then /usr/sbin and the like); ProxyUnavailable naming the package."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in SBIN_DIRS if os.access(Path(d) / name, os.X_OK)), None
    )
    if found is None:
        raise ProxyUnavailable(
            f"{name} is not installed (no {name} on PATH or in {', '.join(SBIN_DIRS)}): "
            f"apt-get install {package or name}"
        )
    return found


def available(kind: str) -> bool:
    """True when the proxy's binary is installed."""
    try:
        find_binary(kind)
    except ProxyUnavailable:
        return False
    return True


@dataclass(frozen=True)
class ProxySpec:
    """One proxy process: its kind, the transports it fronts (a listening port and an upstream
    HOST:PORT for each), the CPUs it is pinned to (None: not pinned) and its worker count (nginx
    worker processes, HAProxy threads)."""

    kind: str
    rest_port: int | None = None
    upstream_rest: str | None = None
    grpc_port: int | None = None
    upstream_grpc: str | None = None
    cpus: Sequence[int] | None = None
    workers: int = 1
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"proxy must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for transport in ("rest", "grpc"):
            port, upstream = getattr(self, f"{transport}_port"), getattr(self, f"upstream_{transport}")
            if (port is None) != (upstream is None):
                raise ConfigError(f"{self.kind}: {transport} needs both a port and an upstream HOST:PORT")
            if port is not None and not 0 < int(port) < 65536:
                raise ConfigError(f"{self.kind}: {transport} port {port} is outside 1..65535")
            if upstream is not None:
                host, sep, up_port = str(upstream).rpartition(":")
                if not sep or not host or not up_port.isdigit():
                    raise ConfigError(
                        f"{self.kind}: upstream_{transport} must be HOST:PORT, got {upstream!r}"
                    )
        if self.rest_port is None and self.grpc_port is None:
            raise ConfigError(f"{self.kind}: give a rest and/or a grpc port with its upstream")
        if self.workers < 1:
            raise ConfigError(f"{self.kind}: workers must be >= 1, got {self.workers}")
        if self.cpus is not None and not self.cpus:
            raise ConfigError(f"{self.kind}: cpus is empty (None: not pinned)")

    @property
    def ports(self) -> list[int]:
        return [p for p in (self.rest_port, self.grpc_port) if p is not None]


# --------------------------------------------------------------------------------------------------
# Configuration


def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


def render_config(spec: ProxySpec, folder: Path) -> str:
    """The proxy's configuration text for `spec`, its files kept in `folder`."""
    values: dict[str, Any] = {
        "folder": str(folder),
        "host": spec.host,
        "workers": spec.workers,
        "hop_header": HOP_HEADER,
        "hop_value": spec.kind,
        "rest_port": spec.rest_port,
        "upstream_rest": spec.upstream_rest,
        "grpc_port": spec.grpc_port,
        "upstream_grpc": spec.upstream_grpc,
    }
    parts = [
        _template(f"{spec.kind}-{t}.tmpl").substitute(values).strip("\n")
        for t in ("rest", "grpc")
        if getattr(spec, f"{t}_port") is not None
    ]
    main = "nginx.conf.tmpl" if spec.kind == "nginx" else "haproxy.cfg.tmpl"
    key = "servers" if spec.kind == "nginx" else "sections"
    return _template(main).substitute({**values, key: "\n\n".join(parts)})


def write_config(spec: ProxySpec, folder: Path) -> Path:
    """Render the configuration into `folder` (created, with nginx's temp folder) and return its path."""
    folder = Path(folder).resolve()
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    path = folder / _CONF_NAME[spec.kind]
    write_text(path, render_config(spec, folder))
    return path


def command(spec: ProxySpec, conf: Path) -> list[str]:
    """The command line that runs the proxy in the foreground (behind `taskset -c` when pinned)."""
    binary = find_binary(spec.kind)
    if spec.kind == "nginx":
        cmd = [binary, "-g", "daemon off;", "-p", f"{conf.parent}/", "-c", str(conf)]
    else:
        cmd = [binary, "-db", "-f", str(conf)]
    if spec.cpus is not None:
        cmd = [find_binary("taskset", "util-linux"), "-c", ",".join(str(c) for c in spec.cpus), *cmd]
    return cmd


def check_config(spec: ProxySpec, folder: Path, timeout_s: float = 15.0) -> None:
    """Let the proxy check the rendered configuration (`nginx -t`, `haproxy -c`); PlatformError if bad."""
    conf = write_config(spec, folder)
    binary = find_binary(spec.kind)
    if spec.kind == "nginx":
        cmd = [binary, "-t", "-g", "daemon off;", "-p", f"{conf.parent}/", "-c", str(conf)]
    else:
        cmd = [binary, "-c", "-f", str(conf)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if res.returncode != 0:
        out = " | ".join((res.stdout + res.stderr).strip().splitlines()[-5:])
        raise PlatformError(f"{spec.kind} refuses its configuration {conf}: {out}")


# --------------------------------------------------------------------------------------------------
# Processes


def group_members(pgid: int) -> list[int]:
    """The pids of the live processes in process group `pgid` (zombies excluded)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return sorted(out)


def _accepts(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


@dataclass
class ProxyProcess:
    """A started proxy: its process (the group leader), configuration and log."""

    spec: ProxySpec
    folder: Path
    conf: Path
    log: Path
    cmd: list[str]
    popen: subprocess.Popen[bytes]
    cmdline: list[str] | None = None  # as /proc shows it once ready (nginx renames its master)
    starttime: int | None = None
    stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Every live process the proxy started (its group: nginx's master and workers)."""
        return group_members(self.pid)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Wait until every port accepts (and nginx's workers run); PlatformError (with the log's tail)
        if the proxy exits or is not listening in time."""
        deadline = time.monotonic() + timeout_s
        where = f"{self.spec.host}:{'/'.join(map(str, self.spec.ports))}"
        while True:
            if not self.alive():
                raise PlatformError(
                    f"{self.spec.kind} exited with code {self.popen.returncode} before listening on "
                    f"{where}; log: {log_tail(str(self.log))}"
                )
            workers_up = self.spec.kind != "nginx" or len(self.members()) > self.spec.workers
            if workers_up and all(_accepts(self.spec.host, p) for p in self.spec.ports):
                time.sleep(0.05)  # a failed bind of a second listener exits at once: look again
                if self.alive():
                    self.cmdline = proc_cmdline(self.pid)
                    self.starttime = proc_starttime(self.pid)
                    return
                continue
            if time.monotonic() >= deadline:
                raise PlatformError(
                    f"{self.spec.kind} not accepting on {where} after {timeout_s:g}s; "
                    f"log: {log_tail(str(self.log))}"
                )
            time.sleep(0.05)

    def record(self, role: str | None = None) -> dict[str, Any]:
        """The local platform's record of a spawned server (pid, process group, cmdline and start
        time as /proc shows them, log), so its checks and teardown apply to the proxy too."""
        return {
            "role": role or self.spec.kind,
            "pid": self.pid,
            "pgid": self.pid,
            "cmdline": self.cmdline or proc_cmdline(self.pid) or self.cmd,
            "starttime": self.starttime if self.starttime is not None else proc_starttime(self.pid),
            "log": str(self.log),
            "port": self.spec.rest_port if self.spec.rest_port is not None else self.spec.grpc_port,
            "config": str(self.conf),
        }

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the process group (nginx: a fast shutdown of master and workers; HAProxy: a hard
        stop), SIGKILL after `grace_s`; returns once no process of the group is left."""
        if self.stopped:
            return
        pgid = self.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while (self.popen.poll() is None or group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.popen.poll() is None or group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5.0)
        deadline = time.monotonic() + 5.0
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = group_members(pgid)
        if self.popen.poll() is None or left:
            raise PlatformError(f"{self.spec.kind} (pid {pgid}) left processes {left} after SIGKILL")
        self.stopped = True

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_proxy(spec: ProxySpec, folder: Path) -> ProxyProcess:
    """Render the configuration into `folder` and start the proxy (not waiting for it): its own
    session, stdout and stderr into `<folder>/<kind>.log`."""
    for port in spec.ports:
        if not port_free(spec.host, port):
            raise PlatformError(f"port {port} on {spec.host} is already in use ({spec.kind})")
    conf = write_config(spec, folder)
    cmd = command(spec, conf)
    log = conf.parent / f"{spec.kind}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=conf.parent,
            start_new_session=True,
        )
    return ProxyProcess(spec, conf.parent, conf, log, cmd, popen)


def start_proxy(spec: ProxySpec, folder: Path, timeout_s: float = 15.0) -> ProxyProcess:
    """Spawn the proxy and wait until it accepts on every port; on failure nothing is left running."""
    proxy = spawn_proxy(spec, folder)
    try:
        proxy.wait_ready(timeout_s)
    except BaseException:
        with contextlib.suppress(PlatformError):
            proxy.stop(grace_s=1.0)
        raise
    return proxy


def orphans(record: dict[str, Any]) -> list[int]:
    """The live processes a recorded proxy left in its process group after its leader died: nginx's
    workers go on serving when their master is killed, and a teardown that only signals a leader it
    recognises would leave them running. Members count when they started no earlier than the
    recorded leader and their command line is the proxy's (`nginx: worker process`). Empty while the
    leader itself runs (the group is then stopped through it), and for a record that is no proxy's."""
    kind = str(record.get("role", ""))
    if kind not in KINDS or not record.get("pgid"):
        return []
    pgid, leader_start = int(record["pgid"]), record.get("starttime")
    if proc_state(pgid) not in (None, "Z", "X") and proc_starttime(pgid) == leader_start:
        return []  # the leader runs: not orphans
    out = []
    for pid in group_members(pgid):
        cmd, start = proc_cmdline(pid), proc_starttime(pid)
        if not cmd or start is None or (leader_start is not None and start < int(leader_start)):
            continue
        if cmd[0].split(":")[0].rsplit("/", 1)[-1] == kind:
            out.append(pid)
    return out


def stop_orphans(record: dict[str, Any], timeout_s: float = 5.0) -> list[int]:
    """SIGKILL what `orphans` finds (a masterless worker has nobody to shut it down gracefully) and
    wait until it is gone; returns the pids stopped. PlatformError if one outlives the timeout."""
    pids = orphans(record)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and [p for p in pids if p in group_members(int(record["pgid"]))]:
        time.sleep(0.02)
    left = [p for p in pids if p in group_members(int(record["pgid"]))]
    if left:
        raise PlatformError(f"{record['role']}: processes {left} of pid {record['pgid']} survive SIGKILL")
    return pids


def require(kinds: Sequence[str]) -> None:
    """Before a run starts: every proxy it needs is installed (ProxyUnavailable, exit 2, one line
    naming what to install, otherwise)."""
    missing = [k for k in kinds if not available(k)]
    if missing:
        raise ProxyUnavailable(
            f"this spec puts {' and '.join(missing)} in an arm, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: apt-get install {' '.join(missing)}"
        )
