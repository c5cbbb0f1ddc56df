"""orchbench.fsio: every file is replaced whole or not at all, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchbench import fsio
from results_schema import io as results_io
from results_schema.io import write_table
from results_schema.schema import SCHEMAS


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_creates_folders_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    assert fsio.write_text(target, "{}\n") == target
    assert target.read_text() == "{}\n"
    assert _leftovers(target.parent) == []
    assert (target.stat().st_mode & 0o777) == 0o644


def test_replace_is_atomic_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    before = os.stat(target).st_ino
    with fsio.atomic_path(target) as tmp:
        tmp.write_text("new, half written")
        assert target.read_text() == "old"  # until the block ends, the old file stays whole
        assert tmp.parent == target.parent  # same folder: same filesystem, so the rename is atomic
    assert target.read_text() == "new, half written"
    assert os.stat(target).st_ino != before  # replaced by a rename, not rewritten in place
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), fsio.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def fill(_fh: object) -> None:
        raise Boom

    with pytest.raises(Boom):
        fsio._write(tmp_path / "new.bin", fill, 0o644)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_during_write_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    with pytest.raises(KeyboardInterrupt), fsio.atomic_path(target):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_parquet_writer_failure_leaves_no_temporary_and_keeps_old_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "overheads.parquet"
    write_table(SCHEMAS["overheads"].empty_table(), target, "overheads")
    old = target.read_bytes()

    def half_then_fail(_table: object, where: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_io.pq, "write_table", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_table(SCHEMAS["overheads"].empty_table(), target, "overheads")
    assert target.read_bytes() == old
    assert _leftovers(tmp_path) == []
