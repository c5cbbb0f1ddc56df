"""The load-tool seam: one adapter per tool builds the command line, runs it, returns raw artifacts.

Parsing lives in `results_schema/` (one parser per format), so JSON from a run made by hand can be
fed in too. Adapters never parse summaries out of logs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from orchbench.core.arms import Endpoint

Mode = Literal["closed", "open"]


@dataclass(frozen=True)
class LoadProfile:
    """closed: `workers` loop back-to-back (the seed: 1 worker, vegeta -rate=0 / ghz -c 1).
    open: requests start at a constant `rate` per second whatever the answers do."""

    mode: Mode = "closed"
    workers: int = 1
    rate: float | None = None
    duration_s: float = 30.0
    warmup_s: float = 5.0
    timeout_s: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadRun:
    """What one load-test invocation left on disk. Paths are absolute."""

    tool: str
    tool_version: str
    raw_path: Path  # the tool's own summary JSON (vegeta report, ghz -O json, k6 handleSummary)
    samples_path: Path | None  # per-request records in the tool's format (k6 CSV, ghz details, vegeta CSV)
    command: list[str]
    exit_code: int
    started_at_ns: int
    ended_at_ns: int
    extra: dict[str, Any] = field(default_factory=dict)


class LoadTool(Protocol):
    name: str

    def available(self) -> bool: ...

    def version(self) -> str: ...

    def run(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
    ) -> LoadRun: ...
