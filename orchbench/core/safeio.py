"""The core's reader for user files (spec, manifest, payload): results_schema.safeio with ConfigError,
and a YAML loader that refuses what yaml.safe_load lets through.

- only regular files, each kind with a size limit (`read_bytes`, `read_text`);
- YAML: duplicate keys in a mapping are an error (PyYAML keeps the last one silently, so
  `blocks: 2` then `blocks: 50` ran 50 blocks), nesting is bounded (deep documents overflowed the
  composer's recursion), and aliases may not expand past MAX_NODES nodes (a "billion laughs"
  document is a few hundred bytes).

Every failure is one ConfigError line naming the file: `<path>: <what> <reason>`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchbench.core.errors import ConfigError
from results_schema import safeio as _base
from results_schema.safeio import MAX_DEPTH, MiB, UnsafeInput, check_depth

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SPEC_BYTES",
    "MiB",
    "load_yaml",
    "read_bytes",
    "read_text",
]

MAX_SPEC_BYTES = 1 * MiB
MAX_MANIFEST_BYTES = 1 * MiB
#: Payloads are single requests; anything bigger than this is not what the benchmark sends.
MAX_PAYLOAD_BYTES = 64 * MiB
#: Nodes a YAML document may hold once its aliases are expanded.
MAX_NODES = 100_000


def _refused(path: str | os.PathLike[str], what: str, exc: UnsafeInput) -> ConfigError:
    reason = str(exc)
    if reason == "no such file":
        return ConfigError(f"{path}: {what} not found")
    return ConfigError(f"{path}: {what} not readable: {reason}")


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """The bytes of a user's file; `what` (spec, manifest, payload) names it in the one-line error."""
    try:
        return _base.read_bytes(path, limit)
    except UnsafeInput as exc:
        raise _refused(path, what, exc) from None


def read_text(path: str | os.PathLike[str], what: str, limit: int) -> str:
    try:
        return _base.read_text(path, limit)
    except UnsafeInput as exc:
        raise _refused(path, what, exc) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class words this one
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (also at line {seen[key].line + 1})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Any) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised)."""
    sizes: dict[int, int] = {}
    order: list[Any] = []
    stack = [root]
    while stack:  # post-order without recursion
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
    for node in reversed(order):
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        total = 1 + sum(max(sizes.get(id(c), 1), 1) for c in children)
        sizes[id(node)] = min(total, MAX_NODES + 1)
    return sizes[id(root)]


def load_yaml(text: str, source: str, what: str = "") -> Any:
    """One YAML document, strictly: a ConfigError `<source>: not valid YAML (...)` for anything off."""
    prefix = f"{source}: {what + ' ' if what else ''}"
    try:
        loader = _StrictLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prefix}not valid YAML ({_yaml_reason(exc)})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise ConfigError(f"{prefix}YAML expands to more than {MAX_NODES} nodes (aliases)")
        data = loader.construct_document(node)
        check_depth(data)
        return data
    except yaml.YAMLError as exc:
        raise ConfigError(f"{prefix}not valid YAML ({_yaml_reason(exc)})") from None
    except UnsafeInput as exc:
        raise ConfigError(f"{prefix}YAML {exc}") from None
    except RecursionError:
        raise ConfigError(f"{prefix}YAML nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark is not None else ""
        return f"{where}{exc.problem}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def load_yaml_file(path: str | os.PathLike[str], what: str, limit: int) -> Any:
    return load_yaml(read_text(path, what, limit), str(Path(path)))
