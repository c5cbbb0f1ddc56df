"""The tool-neutral summary every parser returns. Units are fixed here: integer ns, epoch ns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from results_schema.schema import LATENCY_FIELDS


@dataclass
class ToolSummary:
    tool: str  # vegeta | ghz | k6
    source: str  # the file it was read from
    requests: int
    successes: int | None = None
    status_codes: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # error message -> count
    latency_ns: dict[str, int] = field(default_factory=dict)  # keys from LATENCY_FIELDS; absent = unknown
    throughput_rps: float | None = None
    bytes_in_total: int | None = None
    bytes_out_total: int | None = None
    started_at_ns: int | None = None
    ended_at_ns: int | None = None
    duration_ns: int | None = None
    tool_version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.latency_ns) - set(LATENCY_FIELDS)
        if unknown:
            raise ValueError(f"unknown latency fields {sorted(unknown)}")

    @property
    def error_count(self) -> int | None:
        return None if self.successes is None else self.requests - self.successes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
