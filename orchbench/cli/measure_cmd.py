"""`orchbench measure`: the one-liner. Builds a `platform: endpoints` spec from URLs (a baseline and
one or more arms), runs it interleaved request by request through the same local runner path as
`orchbench run`, prints the table and writes the same run directory (so `report`, `trend` and
`compare` work on it).

Bad input (no baseline, an arm named twice, a malformed URL or --verify) is exit 2 before anything
starts; an unreachable arm or a TLS failure is one line naming the arm, exit 1, after teardown.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from orchbench.core.errors import ConfigError
from orchbench.core.spec import parse_spec
from orchbench.fsio import write_text

BASELINE_NAME = "baseline"
_ARM = re.compile(r"^([a-z0-9](?:[-a-z0-9]{0,30}[a-z0-9])?)=(.+)$")


def _split_arm(text: str) -> tuple[str, str]:
    m = _ARM.match(text)
    if not m:
        raise ConfigError(f"--arm {text!r}: expected NAME=URL (NAME: lower-case letters, digits, '-')")
    return m.group(1), m.group(2)


def _target(url: str, transport: str, what: str) -> dict[str, Any]:
    """An arm's `url` (REST) or `grpc` (host:port; grpcs://host:port for TLS) for the spec."""
    if transport == "rest":
        if not re.match(r"^https?://[^\s/?#]+", url):
            raise ConfigError(f"{what}: {url!r} is not an http(s):// URL")
        return {"url": url.rstrip("/") if url.count("/") > 2 else url}
    tls = url.startswith("grpcs://")
    hostport = re.sub(r"^(grpcs?|https?)://", "", url).rstrip("/")
    if not re.match(r"^[^\s/:]+:[0-9]{1,5}$", hostport):
        raise ConfigError(f"{what}: {url!r} is not host:port (or grpcs://host:port for TLS)")
    return {"grpc": hostport, **({"tls": {}} if tls else {})}


def _verify(text: str) -> tuple[str, dict[str, Any]]:
    """NAME=HEADER (present), NAME=HEADER:VALUE (with that value), NAME=!HEADER (absent)."""
    name, _, rule = text.partition("=")
    if not name or not rule:
        raise ConfigError(f"--verify {text!r}: expected NAME=HEADER, NAME=HEADER:VALUE or NAME=!HEADER")
    absent = rule.startswith("!")
    header, _, value = rule.lstrip("!").partition(":")
    check: dict[str, Any] = {"header": header.lower(), "present": not absent}
    if value:
        check["value"] = value
    return name, check


def build_spec(
    baseline: str | None,
    arms: list[str],
    transport: str = "rest",
    protocol: str = "tfserving",
    model: str | None = None,
    payload: Path | None = None,
    verify: list[str] | None = None,
    duration_s: float = 10.0,
    blocks: int = 4,
    warmup_s: float = 1.0,
    ca_file: Path | None = None,
    insecure: bool = False,
    headers: list[str] | None = None,
    ready_timeout_s: float = 10.0,
    floor: bool = True,
) -> dict[str, Any]:
    """The endpoints spec `orchbench measure` runs (validated; ConfigError, exit 2, when it is not)."""
    if not baseline:
        raise ConfigError("--baseline URL is required (the arm every other arm is compared with)")
    if not arms:
        raise ConfigError("name at least one --arm NAME=URL to compare with the baseline")
    if transport not in ("rest", "grpc"):
        raise ConfigError(f"--transport must be rest or grpc, got {transport!r}")
    pairs = [(BASELINE_NAME, baseline), *(_split_arm(a) for a in arms)]
    names = [n for n, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"arm {twice[0]!r} is named twice (the baseline is named {BASELINE_NAME!r})")
    extra_headers: dict[str, Any] = {}
    for h in headers or []:
        key, sep, value = h.partition("=")
        if not sep or not key:
            raise ConfigError(f"--header {h!r}: expected NAME=VALUE or NAME=env:VARIABLE")
        extra_headers[key] = {"env": value[4:]} if value.startswith("env:") else value
    checks: dict[str, list[dict[str, Any]]] = {}
    for v in verify or []:
        name, check = _verify(v)
        if name not in names:
            raise ConfigError(f"--verify {v!r}: no arm {name!r} (arms: {', '.join(names)})")
        checks.setdefault(name, []).append(check)
    spec_arms = []
    for i, (name, url) in enumerate(pairs):
        arm: dict[str, Any] = {"name": name, **_target(url, transport, f"arm {name}")}
        if i == 0:
            arm["baseline"] = True
        https = url.startswith(("https://", "grpcs://"))
        if https and (ca_file or insecure):
            arm["tls"] = {"ca_file": str(ca_file.resolve()) if ca_file else None, "verify": not insecure}
        if extra_headers:
            arm["headers"] = dict(extra_headers)
        if name in checks:
            arm["verify"] = checks[name]
        spec_arms.append(arm)
    data: dict[str, Any] = {
        "name": "measure",
        "platform": "endpoints",
        "protocol": protocol,
        "transports": [transport],
        "arms": spec_arms,
        "blocks": blocks,
        "load": {"tool": "k6", "interleave": "request", "duration_s": duration_s, "warmup_s": warmup_s},
        "local": {"cpu_pinning": False, "ready_timeout_s": ready_timeout_s},
    }
    if not floor:
        data["floor"] = False  # no floor step; summary.json and the report say it was switched off
    if model:
        data["model"] = model
    if payload is not None:
        data["payloads"] = {transport: str(payload.resolve())}
        if protocol == "http":
            data["http"] = {"body": str(payload.resolve())}
    elif protocol == "http":
        data["http"] = {"method": "GET"}
    parse_spec(data, "orchbench measure")  # exit 2 before anything starts
    return data


def run_measure(out: Path | None, quiet: bool = False, wait: bool = False, **kwargs: Any) -> Path:
    """Build the spec, write it to a file of its own, and run it as `orchbench run` would."""
    from orchbench.cli.run_cmd import run_local

    data = build_spec(**kwargs)
    with tempfile.TemporaryDirectory(prefix="orchbench-measure-") as tmp:
        path = write_text(Path(tmp) / "measure.yaml", yaml.safe_dump(data, sort_keys=False))
        return run_local(path, out, quiet=quiet, wait=wait)
