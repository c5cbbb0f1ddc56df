"""One way to write a file: atomically. Every file orchbench writes goes through here.

A temporary file in the target's own folder (same filesystem, so the rename is atomic), written,
flushed and fsynced, then renamed over the target, and the folder fsynced so the rename survives a
crash. A reader sees the old file or the new one, never half of either. The bottom layer: imports
nothing of orchbench, so results_schema and serving use it too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "write_bytes", "write_text"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yields a temporary path beside `path`; whatever is written there replaces `path` atomically
    when the block ends without an exception (on an exception the temporary file is removed).
    For writers that need a file name (pyarrow's Parquet writer)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _write(path: str | os.PathLike[str], fill: Callable[[IO[bytes]], object], mode: int) -> Path:
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as fh:
        fill(fh)
        fh.flush()
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    return _write(path, lambda fh: fh.write(data), mode)


def write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    return write_bytes(path, text.encode("utf-8"), mode)
