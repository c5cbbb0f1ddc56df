"""`platform: endpoints`: the user's own stack, nothing deployed. Each arm is a base URL (REST) and
host:port (gRPC), with optional TLS, extra request headers (values from environment variables named,
never written) and optional verification by a response header / initial-metadata key.

deploy records the target; wait probes reachability (REST: any HTTP answer; gRPC: any status but
UNAVAILABLE) until the timeout, a TLS failure at once; verify_arm sends one real request, checks the
answer by protocol and the arm's `verify` headers (an arm without them is labelled unverified);
teardown does nothing.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchbench.core.arms import ArmName, Endpoint, Transport, secret_values
from orchbench.core.errors import ArmVerificationError, DeployTimeout, PlatformError
from orchbench.core.platform.answer import answer
from orchbench.core.platform.base import ArmEvidence, DeploymentRecord


@dataclass(frozen=True)
class EndpointArm:
    """One arm of an endpoints spec (what Spec.endpoint_arms gives)."""

    name: ArmName
    url: str | None = None
    grpc: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)  # {"env": NAME} for env-sourced values
    tls: dict[str, Any] | None = None  # {"ca_file": absolute path or None, "verify": bool}
    verify: list[dict[str, Any]] = field(default_factory=list)


def _scrub(text: str, headers: dict[str, Any]) -> str:
    for secret in secret_values(headers):
        text = text.replace(secret, "***")
    return text


class EndpointsPlatform:
    name = "endpoints"

    def __init__(
        self,
        arms: dict[ArmName, EndpointArm],
        transport: Transport,
        model_name: str,
        endpoint_extras: dict[str, Any] | None = None,
    ) -> None:
        self.arms = arms
        self.transport = transport
        self.model_name = model_name
        self.extras = dict(endpoint_extras or {})

    def taint(self, owner: str = "") -> dict[str, Any]:
        return {"platform": "endpoints", "pinned": False}

    def untaint(self, owner: str = "") -> None:
        return None

    def endpoint_of(self, arm: ArmName) -> Endpoint:
        t = self.arms[arm]
        extras = {**self.extras, "headers": {**self.extras.get("headers", {}), **t.headers}}
        if self.transport == "rest":
            if not t.url:
                raise PlatformError(f"arm {arm!r}: no url for REST")
            parts = urlsplit(t.url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return Endpoint(
                "rest",
                arm,
                parts.hostname or "",
                port,
                self.model_name,
                scheme=parts.scheme,
                base_path=parts.path.rstrip("/"),
                tls=(t.tls or {"verify": True}) if parts.scheme == "https" else None,
                **extras,
            )
        if not t.grpc:
            raise PlatformError(f"arm {arm!r}: no grpc target")
        host, _, port_s = t.grpc.rpartition(":")
        return Endpoint("grpc", arm, host, int(port_s), self.model_name, tls=t.tls, **extras)

    def deploy(self, manifest: dict[str, Any], arm: ArmName, record_path: Path) -> DeploymentRecord:
        ep = self.endpoint_of(arm)
        record = DeploymentRecord(
            platform="endpoints",
            name=f"{arm}-{self.transport}",
            transport=self.transport,
            arm=arm,
            model_name=self.model_name,
            details={"endpoint": ep.to_dict()},  # headers by env var NAME only
        )
        record.save(record_path)
        return record

    def wait(self, record: DeploymentRecord, timeout_s: float) -> Endpoint:
        ep = Endpoint.from_dict(record.details["endpoint"])
        where = ep.url if ep.transport == "rest" else f"gRPC {ep.grpc_target}"
        deadline = time.monotonic() + timeout_s
        last = "no attempt yet"
        while True:
            try:
                answer(ep, timeout_s=min(5.0, max(timeout_s, 0.5)))
                return ep
            except ssl.SSLError as exc:
                reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
                raise PlatformError(
                    _scrub(f"arm {ep.arm!r}: TLS failure at {where}: {reason}", ep.headers)
                ) from None
            except (OSError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if "SSL" in last or "certificate" in last.lower() or "handshake" in last.lower():
                    raise PlatformError(
                        _scrub(f"arm {ep.arm!r}: TLS failure at {where}: {last}", ep.headers)
                    ) from None
            if time.monotonic() >= deadline:
                raise DeployTimeout(
                    _scrub(f"arm {ep.arm!r}: {where} not reachable after {timeout_s:g}s ({last})", ep.headers)
                )
            time.sleep(0.2)

    def verify_arm(self, record: DeploymentRecord, endpoint: Endpoint) -> ArmEvidence:
        where = endpoint.url if endpoint.transport == "rest" else f"gRPC {endpoint.grpc_target}"
        try:
            got = answer(endpoint)
        except (OSError, ConnectionError) as exc:
            raise ArmVerificationError(
                _scrub(f"arm {endpoint.arm!r}: {where}: {type(exc).__name__}: {exc}", endpoint.headers)
            ) from None
        if not got.ok:
            raise ArmVerificationError(
                _scrub(f"arm {endpoint.arm!r}: {where} ({endpoint.protocol}): {got.why}", endpoint.headers)
            )
        checks = self.arms[endpoint.arm].verify if endpoint.arm in self.arms else []
        if not checks:
            return ArmEvidence(
                arm=endpoint.arm,
                orchestrator_on_path=False,
                how=f"unverified (no verify check in the spec; {got.status})",
                verified=False,
                hop=None,
            )
        seen = []
        for c in checks:
            header, value, present = c["header"].lower(), c.get("value"), bool(c.get("present", True))
            have = got.headers.get(header)
            ok = (have is not None and (value is None or have == value)) if present else have is None
            if not ok:
                what = f"{header}={have}" if have is not None else f"no {header}"
                need = f"{header}={value}" if present and value else (header if present else f"no {header}")
                raise ArmVerificationError(
                    f"arm {endpoint.arm!r} at {where}: {got.where} has {what}, expected {need}"
                )
            seen.append(f"{header}={have}" if have is not None else f"no {header}")
        return ArmEvidence(
            arm=endpoint.arm,
            orchestrator_on_path=False,
            how=f"{got.where} " + ", ".join(seen),
            verified=True,
            hop=None,
        )

    def teardown(self, record: DeploymentRecord) -> None:
        return None


def endpoints_platform(spec: Any, transport: Transport) -> EndpointsPlatform:
    """The platform for an endpoints spec (orchbench.core.spec.Spec) and one transport."""
    arms = {}
    for a in spec.arm_list():
        tls = None
        if a.tls is not None:
            ca = str(spec.resolve(a.tls.ca_file)) if a.tls.ca_file else None
            tls = {"ca_file": ca, "verify": a.tls.verify}
        arms[a.name] = EndpointArm(
            name=a.name,
            url=a.url,
            grpc=a.grpc,
            headers=spec.request_headers(a.name),
            tls=tls,
            verify=[v.model_dump() for v in a.verify],
        )
    return EndpointsPlatform(arms, transport, spec.model_name(), spec.endpoint_extras())
