"""The CPU wake-up latency request held while load tests run (orchbench.core.loadtools.cpu_wake)."""

from __future__ import annotations

import html
import json
import os
import struct
from pathlib import Path

import pytest

from orchbench.core import report
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools.cpu_wake import QOS_PATH, hold, line, summarise
from orchbench.core.spec import parse_spec
from tests.run_fixtures import make_run_dir

NO_CONSTRAINT = 2_000_000_000  # the kernel's PM_QOS_CPU_LATENCY_DEFAULT_VALUE (µs)


def _current_target_us() -> int:
    """The CPU latency target the kernel enforces now (reading the file says it; the reader's own
    request, opened with no constraint, does not change it)."""
    fd = os.open(QOS_PATH, os.O_RDONLY)
    try:
        return int(struct.unpack("=i", os.read(fd, 4))[0])
    finally:
        os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_not_asked_for_holds_nothing(tmp_path: Path) -> None:
    target = tmp_path / "qos"
    with hold(None, target) as rec:
        assert rec == {"held": False, "reason": "not asked for (load.cpu_wake_latency_us unset)"}
    assert not target.exists()


def test_the_request_is_written_as_the_kernel_reads_it_and_closed_after(tmp_path: Path) -> None:
    target = tmp_path / "qos"
    target.write_bytes(b"")
    before = _open_fds()
    with hold(25, target) as rec:
        assert rec == {"held": True, "latency_us": 25}
        assert _open_fds() == before + 1  # the request lasts while the file is open
        assert target.read_bytes() == struct.pack("=i", 25)
    assert _open_fds() == before


def test_closed_when_the_load_test_fails_inside(tmp_path: Path) -> None:
    target = tmp_path / "qos"
    target.write_bytes(b"")
    before = _open_fds()
    with pytest.raises(RuntimeError), hold(0, target):
        raise RuntimeError("k6 died")
    assert _open_fds() == before


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_what_cannot_be_opened_is_recorded_and_the_run_goes_on(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "qos"
    if kind == "directory":
        target.mkdir()
    with hold(0, target) as rec:
        assert rec["held"] is False and rec["latency_us"] == 0
        assert rec["reason"].startswith(f"cannot open {target}: ")
        assert ("No such file" if kind == "missing" else "directory") in rec["reason"]


@pytest.mark.skipif(
    not os.access(QOS_PATH, os.W_OK), reason=f"{QOS_PATH} is not writable here (needs root on Linux)"
)
def test_the_kernel_enforces_it_while_held_and_drops_it_after() -> None:
    before = _current_target_us()
    if before == 0:
        pytest.skip("another process holds the CPUs awake already (a tuned profile, a load test)")
    with hold(0) as rec:
        assert rec == {"held": True, "latency_us": 0}
        assert _current_target_us() == 0
    assert _current_target_us() == before


def test_the_runs_record_counts_what_held_and_says_why_not() -> None:
    held = {"held": True, "latency_us": 0}
    denied = {"held": False, "latency_us": 0, "reason": "cannot open /dev/cpu_dma_latency: Permission denied"}
    assert summarise([held, held, held]) == {"held": 3, "load_tests": 3, "latency_us": 0}
    assert summarise([held, denied, None]) == {
        "held": 1,
        "load_tests": 3,
        "latency_us": 0,
        "not_held": ["cannot open /dev/cpu_dma_latency: Permission denied"],
        "unrecorded": 1,
    }
    assert summarise([{"held": True, "latency_us": 0}, {"held": True, "latency_us": 50}]) == {
        "held": 2,
        "load_tests": 2,
        "latency_us": [0, 50],
    }
    assert summarise([]) == {"held": 0, "load_tests": 0}


def _spec(load: dict[str, object]) -> dict[str, object]:
    return {"name": "x", "platform": "local", "transports": ["rest"], "load": {"duration_s": 1, **load}}


def test_the_spec_holds_at_0_by_default_and_null_switches_it_off() -> None:
    default = parse_spec(_spec({}))
    assert default.load.cpu_wake_latency_us == 0
    assert "cpu_wake_latency_us" not in default.to_json_dict()["load"]  # specs of before read the same
    off = parse_spec(_spec({"cpu_wake_latency_us": None}))
    assert off.load.cpu_wake_latency_us is None
    assert off.to_json_dict()["load"]["cpu_wake_latency_us"] is None
    assert parse_spec(off.to_json_dict()).load.cpu_wake_latency_us is None
    with pytest.raises(ConfigError) as err:
        parse_spec(_spec({"cpu_wake_latency_us": -1}))
    assert "cpu_wake_latency_us" in str(err.value) and "\n" not in str(err.value)


def test_the_terminal_line() -> None:
    assert line({"held": 24, "load_tests": 24, "latency_us": 0}) == (
        "CPU wake-up latency held at 0 µs in all 24 load tests"
    )
    denied = "cannot open /dev/cpu_dma_latency: Permission denied"
    assert line({"held": 0, "load_tests": 3, "not_held": [denied]}) == (
        f"CPU wake-up latency not held ({denied}): idle CPUs slept as they would"
    )
    assert line({"held": 2, "load_tests": 3, "latency_us": 0, "not_held": [denied]}) == (
        f"CPU wake-up latency held at 0 µs in 2 of 3 load tests (not in the others: {denied})"
    )
    assert line(None) == "" and line({"held": 0, "load_tests": 0}) == ""


def test_the_report_says_whether_the_cpus_were_kept_awake(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, transports=("rest",))
    summary = json.loads((run_dir / "summary.json").read_text())
    denied = "cannot open /dev/cpu_dma_latency: Permission denied"
    summary["cpu_wake"] = {"held": 0, "load_tests": 8, "not_held": [denied]}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = report.build_report(run_dir, tmp_path / "r.html").read_text()
    assert f"CPU wake-up latency not held ({denied}): idle CPUs slept as they would." in html.unescape(page)
    del summary["cpu_wake"]  # runs of before: nothing said
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert "CPU wake-up" not in report.build_report(run_dir, tmp_path / "r2.html").read_text()
