"""Tiny local specs for end-to-end tests: free ports, short blocks."""

from __future__ import annotations

from pathlib import Path

import yaml

from serving.runtime import free_port


def tiny_spec(
    tmp_path: Path,
    transports=("rest", "grpc"),
    blocks: int = 2,
    duration_s: float = 2,
    interleave: str = "auto",
    warmup_s: float = 1,
    floor: bool = False,
    **local,
) -> Path:
    """A local spec of `blocks` short blocks on free ports. `floor`: whether the run measures the floor
    first (off unless a test is about it: the floor step adds 8-17 s to every run here)."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    p_with, p_without, p_model = sorted(ports)
    spec = {
        "name": "tiny",
        "platform": "local",
        "transports": list(transports),
        "load": {
            "tool": "k6",
            "workers": 1,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "interleave": interleave,
        },
        "blocks": blocks,
        "floor": floor,
        "thresholds": {"rest_ms": 50.0, "grpc_ms": 50.0},
        "local": {
            "ports": {"with": p_with, "without": p_without, "model_behind_orchestrator": p_model},
            **local,
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
