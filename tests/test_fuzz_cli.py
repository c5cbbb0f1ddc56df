"""Fuzzing harness (hypothesis) over the command line, in-process through `orchbench.cli.main.main`:
any argv -> exit 0, or exit 2 with ONE line on stderr; never a traceback, another exit code or a hang
(every case runs under a hard per-case time limit, SIGALRM). The files handed to it are hostile on
purpose: a FIFO, /dev/zero, a directory, deep and huge JSON, garbage, the real fixtures and specs.
Commands that start servers or reach the network (run, calibrate, floor, serve, submit --host,
cleanup) are left out; they are covered by tests/test_hostile_input.py and tests/test_faults.py.

The count of inputs tried is printed at the end (`pytest -s`): COUNTS.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchbench.cli.main import main
from tests.helpers import FIXTURES, ROOT

CASE_LIMIT_S = 20
COUNTS: Counter[str] = Counter()

_POOL = Path(tempfile.mkdtemp(prefix="orchbench-fuzz-"))
os.mkfifo(_POOL / "fifo")
(_POOL / "deep.json").write_text("[" * 20_000 + "]" * 20_000)
(_POOL / "deep.yaml").write_text("name: x\nload: " + "[" * 3000 + "]" * 3000)
(_POOL / "garbage").write_bytes(bytes(range(256)) * 8)
(_POOL / "empty").write_text("")
(_POOL / "dup.yaml").write_text("name: x\nblocks: 1\nblocks: 2\n")
(_POOL / "k6.json").write_text(
    json.dumps(
        {
            "metrics": {
                "http_req_duration": {"avg": 1, "min": 1, "med": 1, "max": 1},
                "http_reqs": {"count": 1},
            }
        }
    )
)
(_POOL / "dir").mkdir()
FILES = [
    str(_POOL / n)
    for n in ("fifo", "deep.json", "deep.yaml", "garbage", "empty", "dup.yaml", "k6.json", "dir", "nope")
] + [
    "/dev/zero",
    "/dev/null",
    *map(str, sorted(FIXTURES.glob("*.json"))),
    str(ROOT / "specs" / "seed.yaml"),
    str(ROOT / "specs" / "default.yaml"),
    "seed",
    "",
]
COMMANDS = ["compile", "compare", "trend", "report", "version", "submit", "--help", "bogus", ""]
OPTIONS = [
    "--spec",
    "--kind",
    "-o",
    "--output",
    "--with",
    "--without",
    "--json",
    "--parquet",
    "--with-samples",
    "--threshold-ms",
    "--metric",
    "--transport",
    "--experiment",
    "--baseline-runs",
    "--min-effect-ms",
    "--html",
    "--token",
    "--token-file",
    "--namespace",
    "--insecure-http",
    "--timeout-s",
    "--help",
    "--",
]
VALUES = ["workflow", "cron", "template", "bogus", "nan", "inf", "-1", "0", "1e308", "rest", "p50", "x" * 300]
_token = (
    st.sampled_from(OPTIONS)
    | st.sampled_from(FILES)
    | st.sampled_from(VALUES)
    | st.text(max_size=12).filter(lambda t: "\x00" not in t)
)
argv = st.tuples(st.sampled_from(COMMANDS), st.lists(_token, max_size=8)).map(
    lambda t: [t[0], *t[1]] if t[0] else t[1]
)


class _Hang(BaseException):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise _Hang()


def run_cli(args: list[str], out_dir: Path) -> tuple[int, str]:
    """main(args) in-process: (exit code, stderr). Writes go under out_dir (cwd)."""
    if "--host" in args or ("submit" in args and os.environ.get("ARGO_HOST")):
        pytest.skip("would reach the network")
    err, out = io.StringIO(), io.StringIO()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)}
    old_cwd = os.getcwd()
    code: int | None = None
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        os.chdir(out_dir)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except _Hang:
        pytest.fail(f"hang (> {CASE_LIMIT_S} s) on {args!r}")
    finally:
        signal.alarm(0)
        os.chdir(old_cwd)
        for s, h in saved.items():
            signal.signal(s, h)
    return code, err.getvalue()


def _check(args: list[str], code: int, err: str) -> None:
    COUNTS["inputs"] += 1
    lines = [line for line in err.splitlines() if line.strip()]
    ok = "Traceback" not in err and (
        code == 0 or (code == 2 and len(lines) == 1 and lines[0].startswith("orchbench: "))
    )
    if code == 3 and lines and all(line.startswith("orchbench: regression") for line in lines):
        ok = True  # trend's gate said "regression": a verdict, not an error
    COUNTS["exit 0" if code == 0 else f"exit {code}"] += 1
    if not ok:
        COUNTS["bad"] += 1
    assert ok, (args, code, err[-2000:])


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv)
def test_fuzz_cli_argv(tmp_path_factory: pytest.TempPathFactory, args: list[str]) -> None:
    monkey_env = os.environ.pop("ARGO_HOST", None), os.environ.pop("ARGO_TOKEN", None)
    try:
        out_dir = tmp_path_factory.mktemp("cwd")
        code, err = run_cli(args, out_dir)
    finally:
        for key, value in zip(("ARGO_HOST", "ARGO_TOKEN"), monkey_env, strict=True):
            if value is not None:
                os.environ[key] = value
    _check(args, code, err)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(FILES) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.sampled_from(FILES),
)
def test_fuzz_compare_files(tmp_path_factory: pytest.TempPathFactory, a: str, b: str) -> None:
    """compare on any pair of files, or on random content written to a file."""
    folder = tmp_path_factory.mktemp("cmp")
    if a not in FILES:
        (folder / "a.json").write_text(a, errors="surrogateescape")
        a = str(folder / "a.json")
    code, err = run_cli(["compare", "--with", a, "--without", b], folder)
    _check(["compare", a, b], code, err)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=400))
def test_fuzz_compile_spec_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """compile on any spec text: a workflow, or one line."""
    folder = tmp_path_factory.mktemp("spec")
    (folder / "spec.yaml").write_text(text, errors="surrogateescape")
    code, err = run_cli(
        ["compile", "--spec", str(folder / "spec.yaml"), "-o", str(folder / "wf.yaml")], folder
    )
    _check(["compile", text[:80]], code, err)


def test_zz_report_counts() -> None:
    """Run last in this module: the number of inputs tried and how they ended."""
    print(f"\nfuzz harness (CLI): {dict(COUNTS)}")
    assert COUNTS.get("bad", 0) == 0
