"""The load-stage plots of a staged run's report in a real headless Chromium: scripts run, every plot
draws its SVG, no console errors. Skipped (with the reason) when no Chromium is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchbench.core import report
from orchbench.fsio import write_text
from tests.test_report_browser import MainSvgCounter, chromium, console_problems
from tests.test_report_load import staged_data

pytestmark = pytest.mark.browser

PLOTS = [
    *(f"load-overhead-{t}-{m}" for t in ("rest", "grpc") for m in ("p50", "p99")),
    *(f"load-{kind}-{t}" for kind in ("latency", "cpu-ms-per-1000", "peak-rss-mb") for t in ("rest", "grpc")),
    "load-over-time-rest",
]


def test_staged_report_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    write_text(page, report.render_html(staged_data(tmp_path)))
    proc = chromium(page, tmp_path / "profile", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    counter = MainSvgCounter(PLOTS)
    counter.feed(proc.stdout)
    assert all(n >= 1 for n in counter.counts.values()), counter.counts
