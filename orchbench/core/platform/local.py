"""The local platform: the system under test as processes on this machine, isolated by CPU pinning.

Each arm is its own deployment, kept across measurement blocks:
- "without": one model server on the "without" port (default 9000), speaking the manifest's transport;
- "with": a model server on an internal port (default 9100) plus the orchestrator on the "with" port
  (default 8000) forwarding to it (the seed's topology: no-engine means the model alone).

Every step runs in its own short-lived process, so servers start in their own session (process
group) and outlive the step; the record keeps what later steps need (pids, pgids, cmdlines, process
start times, ports, logs). Teardown signals a recorded group only while its leader is still the
process we started (same cmdline and start time), never anything else. Starting, checking and
stopping those processes: local_servers.py.

Taints become CPU pinning: with >= 2 CPUs the load tester gets one CPU and the servers the rest;
the plan is written to <run_dir>/cpu_plan.json (`read_cpu_plan`) for the load-test step.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchbench.core.arms import (
    HOPS,
    PORT_WITH_ORCHESTRATOR,
    PORT_WITHOUT_ORCHESTRATOR,
    ArmName,
    Endpoint,
    Transport,
)
from orchbench.core.errors import ConfigError, DeployTimeout, PlatformError
from orchbench.core.manifest import inspect
from orchbench.core.platform.base import ArmEvidence, DeploymentRecord
from orchbench.core.platform.local_cpu import CPU_PLAN_FILE, cpu_plan, read_cpu_plan, write_cpu_plan
from orchbench.core.platform.local_procs import (
    deferred_signals,
    kill_on_error,
    log_tail,
    port_free,
)
from orchbench.core.platform.local_servers import PROXY_KINDS, Servers, check_alive, stop
from orchbench.core.platform.local_verify import MARKER, legacy_hop, probe, verify_arm

__all__ = ["CPU_PLAN_FILE", "MARKER", "LocalPlatform", "LocalPorts", "read_cpu_plan"]

DEFAULT_INTERNAL_PORT = 9100
#: What serves the model: the bundled serving.model_server, or KServe's Python model server.
MODEL_SERVERS = ("bundled", "kserve")


@dataclass(frozen=True)
class LocalPorts:
    """with_orchestrator: where clients reach the orchestrator; without_orchestrator: the model
    alone; internal: the model behind the orchestrator in the 'with' arm."""

    with_orchestrator: int = PORT_WITH_ORCHESTRATOR
    without_orchestrator: int = PORT_WITHOUT_ORCHESTRATOR
    internal: int = DEFAULT_INTERNAL_PORT

    def __post_init__(self) -> None:
        ports = (self.with_orchestrator, self.without_orchestrator, self.internal)
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ConfigError(f"local ports must be three distinct ports in 1..65535, got {ports}")


class LocalPlatform:
    name = "local"

    def __init__(
        self,
        run_dir: Path,
        ports: LocalPorts | None = None,
        cpu_pinning: bool = True,
        inject_delay_ms: float = 0.0,
        model_threads: int = 1,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        shared_model: bool = True,
        impl: dict[str, str | None] | None = None,
        endpoint_extras: dict[str, Any] | None = None,
        model_server: str = "bundled",
    ) -> None:
        if inject_delay_ms < 0:
            raise ConfigError(f"inject_delay_ms must be >= 0, got {inject_delay_ms}")
        if model_threads < 1:
            raise ConfigError(f"model_threads must be >= 1, got {model_threads}")
        self.run_dir = Path(run_dir)
        #: what every Endpoint carries besides where (protocol, http request, headers: Spec.endpoint_extras)
        self.endpoint_extras = dict(endpoint_extras or {})
        self.ports = ports or LocalPorts()
        self.cpu_pinning = cpu_pinning
        self.inject_delay_ms = float(inject_delay_ms)
        self.model_threads = model_threads
        self.python = python
        self.host = host
        #: The "with" arm's orchestrator fronts the "without" arm's model process, so the arms differ
        #: by the orchestrator hop alone (two model processes differ by a few tenths of a ms here).
        self.shared_model = shared_model
        #: protocol implementations: {"model_grpc": --grpc-server, "rest"/"grpc": --rest-impl/--grpc-impl}
        self.impl = {k: v for k, v in (impl or {}).items() if v}
        if model_server not in MODEL_SERVERS:
            raise ConfigError(f"model_server must be one of {', '.join(MODEL_SERVERS)}, got {model_server!r}")
        #: what serves the model: serving.model_server, or KServe's (orchbench.core.platform.kserve_local)
        self.model_server = model_server

    # taints ----------------------------------------------------------------------------------------
    def taint(self, owner: str = "") -> dict[str, Any]:
        # `owner` is unused: the CPU plan lives in this run's own directory (and the machine lock
        # keeps a second local run out), so there is nothing another run could remove.
        plan = cpu_plan(sorted(os.sched_getaffinity(0)), self.cpu_pinning)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_cpu_plan(self.run_dir, plan)
        return plan

    def untaint(self, owner: str = "") -> None:
        (self.run_dir / CPU_PLAN_FILE).unlink(missing_ok=True)

    # deploy ----------------------------------------------------------------------------------------
    def _serving_cpus(self) -> list[int] | None:
        plan = read_cpu_plan(self.run_dir)
        if plan and plan.get("pinned") and plan.get("serving_cpus"):
            return [int(c) for c in plan["serving_cpus"]]
        return None

    def _servers(self, inject_delay_ms: float | None = None) -> Servers:
        delay = self.inject_delay_ms if inject_delay_ms is None else inject_delay_ms
        return Servers(self.python, self.host, self.run_dir, delay, self.impl)

    def deploy(
        self,
        manifest: dict[str, Any],
        arm: ArmName,
        record_path: Path,
        hop: str | None = None,
        port: int | None = None,
        verify: list[dict[str, Any]] | None = None,
        inject_delay_ms: float | None = None,
    ) -> DeploymentRecord:
        """Start one arm. `hop` (default: the seed's reading of "with" / "without"): `model` (the
        model server on `port`, default the "without" port), `orchestrator` (the reference
        orchestrator on `port`, default the "with" port, in front of the "without" arm's model, or
        its own with shared_model false) or `nginx` / `haproxy` (in front of the "without" port's
        model). `verify`: the spec's extra checks of the arm's answers, kept in the record.
        `inject_delay_ms`: this orchestrator's own injected delay (default: the platform's)."""
        delay = self.inject_delay_ms if inject_delay_ms is None else float(inject_delay_ms)
        if hop is None:
            if arm not in ("with", "without"):
                raise ConfigError(f"arm {arm!r}: name its hop (model, orchestrator, nginx or haproxy)")
            hop = legacy_hop(arm)
        if hop not in HOPS:
            raise ConfigError(f"arm {arm!r}: hop must be one of {', '.join(HOPS)}, got {hop!r}")
        role = "without" if hop == "model" else "with"  # the seed's topology this arm has
        info = inspect(manifest)
        transport: Transport = info.transport
        flag = f"--{transport}-port"
        cpus = self._serving_cpus()
        pin = ["--cpus", ",".join(map(str, cpus))] if cpus else []
        shared = role == "with" and (self.shared_model or hop in PROXY_KINDS)
        kserve_python = None  # KServe's Python, when this arm starts a model process of KServe's
        if self.model_server == "kserve":
            from orchbench.core.platform import kserve_local

            kserve_local.check_fits(self.endpoint_extras.get("protocol", "tfserving"), transport, self.impl)
            if not shared:
                kserve_python = str(kserve_local.ensure())  # built first when missing (about a minute)
        if role == "without":
            public = port or self.ports.without_orchestrator
            wanted = [public]
        elif shared:
            public = port or self.ports.with_orchestrator
            wanted = [public]
            if port_free(self.host, self.ports.without_orchestrator):
                raise PlatformError(
                    f"arm {arm!r} fronts the baseline's model on port {self.ports.without_orchestrator}, "
                    f"and nothing listens there: deploy the baseline first ({transport})"
                )
        else:
            public = port or self.ports.with_orchestrator
            wanted = [public, self.ports.internal]
        for p in wanted:
            if not port_free(self.host, p):
                raise PlatformError(f"port {p} on {self.host} is already in use (arm {arm!r}, {transport})")
        logs = self.run_dir / "logs"
        stamp = time.strftime("%Y%m%dT%H%M%S")
        if role == "without":
            model_port = public
        else:
            model_port = self.ports.without_orchestrator if shared else self.ports.internal
        model_args = [
            flag,
            str(model_port),
            "--host",
            self.host,
            "--model-name",
            info.model_name,
            "--threads",
            str(self.model_threads),
            *(["--grpc-server", self.impl["model_grpc"]] if "model_grpc" in self.impl else []),
            *pin,
        ]
        procs: list[dict[str, Any]] = []
        with deferred_signals(), kill_on_error(procs):  # no server may outlive an unsaved record
            servers = self._servers(delay)
            if hop in PROXY_KINDS:
                servers.spawn_proxy(procs, hop, arm, transport, public, model_port, cpus)
            else:
                servers.spawn_arm(
                    procs,
                    info.name,
                    arm,
                    transport,
                    None if shared else model_args,
                    flag,
                    public,
                    model_port,
                    pin,
                    logs,
                    stamp,
                    orchestrator=hop == "orchestrator",
                    kserve_python=kserve_python,
                )
            record = self._record(
                info.name,
                info.model_name,
                transport,
                arm,
                public,
                procs,
                cpus,
                record_path,
                hop=hop,
                internal_port=None if role == "without" else model_port,
                verify=verify,
                inject_delay_ms=delay,
            )
        return record

    def alias(
        self, manifest: dict[str, Any], record_path: Path, arm: ArmName = "without"
    ) -> DeploymentRecord:
        """A/A with a shared model: a record of the running "without" endpoint itself, with no process
        of its own, to stand in for "with" (or for `arm`, an arm with hop model besides the baseline),
        so both arms measure the very same path."""
        info = inspect(manifest)
        port = self.ports.without_orchestrator
        if port_free(self.host, port):
            raise PlatformError(f"A/A: nothing listens on the 'without' port {port}: deploy 'without' first")
        return self._record(
            info.name,
            info.model_name,
            info.transport,
            arm,
            port,
            [],
            self._serving_cpus(),
            record_path,
            hop="model",
        )

    def _record(
        self,
        name: str,
        model_name: str,
        transport: Transport,
        arm: ArmName,
        public: int,
        procs: list[dict[str, Any]],
        cpus: list[int] | None,
        record_path: Path,
        hop: str | None = None,
        internal_port: int | bool | None = False,
        verify: list[dict[str, Any]] | None = None,
        inject_delay_ms: float | None = None,
    ) -> DeploymentRecord:
        hop = hop or legacy_hop(arm)
        delay = self.inject_delay_ms if inject_delay_ms is None else inject_delay_ms
        if internal_port is False:
            internal_port = (
                None
                if hop == "model"
                else self.ports.without_orchestrator
                if self.shared_model
                else self.ports.internal
            )
        record = DeploymentRecord(
            platform=self.name,
            name=name,
            transport=transport,
            arm=arm,
            model_name=model_name,
            details={
                "host": self.host,
                "port": public,
                "internal_port": internal_port,
                "hop": hop,
                "verify": list(verify or []),
                "shared_model": self.shared_model,
                "ports": asdict(self.ports),
                "processes": procs,
                "serving_cpus": cpus,
                "cpu_pinning": bool(cpus),
                "inject_delay_ms": delay if hop == "orchestrator" else 0.0,
                "model_threads": self.model_threads,
                "impl": self.impl,
                "model_server": self.model_server,
                "run_dir": str(self.run_dir),
                "record_path": str(record_path),
                "deployed_at": time.time(),
            },
        )
        record.save(Path(record_path))
        return record

    # wait ------------------------------------------------------------------------------------------
    def wait(self, record: DeploymentRecord, timeout_s: float) -> Endpoint:
        endpoint = Endpoint(
            record.transport,
            record.arm,
            record.details["host"],
            int(record.details["port"]),
            record.model_name,
            **self.endpoint_extras,
        )
        deadline = time.monotonic() + timeout_s
        last = "no attempt yet"
        while True:
            check_alive(record.details.get("processes", []))
            try:
                self._probe(endpoint)
                return endpoint
            except Exception as exc:  # the probe's failure is the status we report
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                tails = "; ".join(
                    f"{p['role']} log: {log_tail(p['log'], 5)}" for p in record.details["processes"]
                )
                raise DeployTimeout(
                    f"{record.name} ({record.arm}, {record.transport}) not ready on port {endpoint.port} "
                    f"after {timeout_s:g}s; last error: {last}; {tails}"
                )
            time.sleep(0.2)

    def _probe(self, endpoint: Endpoint) -> None:
        if self.model_server == "kserve":  # its answers differ from TF Serving's status: a real request
            from orchbench.core.platform.kserve_local import probe as kserve_probe

            kserve_probe(endpoint)
            return
        probe(endpoint)

    # verify ----------------------------------------------------------------------------------------
    def verify_arm(self, record: DeploymentRecord, endpoint: Endpoint) -> ArmEvidence:
        """The record's hop and checks (an endpoint claiming another arm: that arm's seed reading)."""
        if endpoint.arm != record.arm:
            return verify_arm(endpoint, legacy_hop(endpoint.arm))
        evidence = verify_arm(endpoint, record.details.get("hop"), record.details.get("verify"))
        if record.details.get("model_server") == "kserve":  # and KServe's serves the model behind it
            from orchbench.core.platform.kserve_local import verify_server

            model_port = record.details.get("internal_port") or record.details["port"]
            evidence = verify_server(endpoint, evidence, int(model_port))
        return evidence

    # teardown --------------------------------------------------------------------------------------
    def teardown(self, record: DeploymentRecord, grace_s: float = 5.0) -> None:
        stop(list(record.details.get("processes", [])), grace_s)
