"""Read an input file safely: regular files only, at most so many bytes, JSON nested at most so deep.

One small reader for every file orchbench reads from a user (spec, manifest, payload, load-tester
JSON, samples): a FIFO would block the reader forever and a device (/dev/zero) never ends, so
anything but a regular file is refused before a byte is read (the file is opened non-blocking and
checked with fstat, so there is no window between the check and the read); a file larger than its
limit is refused before it is read; nested JSON deeper than MAX_DEPTH is refused instead of failing
later with a RecursionError.

This module sits at the bottom of the results layer and imports nothing of orchbench's other
packages; orchbench.core.safeio wraps it with the core's ConfigError. Failures are `UnsafeInput`
carrying only the reason (no path): each caller turns it into its own one-line error naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MiB",
    "UnsafeInput",
    "check_depth",
    "loads_json",
    "read_bytes",
    "read_json",
    "read_text",
    "require_regular",
]

MiB = 2**20
#: Nesting deeper than this is no real spec, manifest, payload or tool report.
MAX_DEPTH = 64


class UnsafeInput(ValueError):
    """Why an input file cannot be read (the caller adds the file's name)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _limit_text(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB and limit % MiB == 0 else f"{limit} bytes"


def read_bytes(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file `path`, refusing anything else or anything over `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise UnsafeInput("no such file") from None
    except IsADirectoryError:
        raise UnsafeInput("is a directory, not a file") from None
    except OSError as exc:
        raise UnsafeInput(f"cannot open ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeInput(f"is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnsafeInput(
                f"is {info.st_size / MiB:.1f} MiB, larger than the limit of {_limit_text(limit)}"
            )
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while it is read: never take more than the limit
            chunk = os.read(fd, min(MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnsafeInput(f"is larger than the limit of {_limit_text(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise UnsafeInput(f"cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput(f"is not UTF-8 text (byte {exc.start})") from None


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than `max_depth` (iteratively: no recursion to overflow)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list, tuple)):
            continue
        if depth > max_depth:
            raise UnsafeInput(f"is nested more than {max_depth} levels deep")
        if id(node) in seen:  # YAML aliases share objects: walk each once
            continue
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)


def loads_json(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing documents nested deeper than `max_depth`. Raises json.JSONDecodeError for
    invalid JSON (callers word it) and UnsafeInput for too deep a document."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeInput(f"is nested more than {max_depth} levels deep") from None
    check_depth(value, max_depth)
    return value


def read_json(path: str | os.PathLike[str], limit: int, max_depth: int = MAX_DEPTH) -> Any:
    """read_bytes + loads_json (JSONDecodeError passes through for the caller to word)."""
    return loads_json(read_bytes(Path(path), limit), max_depth)


def require_regular(path: str | os.PathLike[str], limit: int) -> None:
    """For readers that open the file themselves (CSV through pandas): refuse anything but a regular
    file of at most `limit` bytes, without opening it (stat never blocks on a FIFO)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnsafeInput("no such file") from None
    except OSError as exc:
        raise UnsafeInput(f"cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeInput(f"is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise UnsafeInput(f"is {info.st_size / MiB:.1f} MiB, larger than the limit of {_limit_text(limit)}")
