"""The report in a real headless Chromium: scripts run, every plot draws its SVG, no console errors.

Skipped (with the reason) when no Chromium is installed; on Debian: `apt-get install -y chromium`.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchbench.core.report import build_report
from tests.run_fixtures import make_run_dir

pytestmark = pytest.mark.browser

BROWSER = next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)
if BROWSER is None:
    pytest.skip(
        "no headless Chromium installed (apt-get install -y chromium); report not checked in a browser",
        allow_module_level=True,
    )

PLOTS = [f"{kind}-{t}" for kind in ("cdf", "hist", "blocks") for t in ("rest", "grpc")]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    cmd = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", *extra, page.as_uri(),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class MainSvgCounter(HTMLParser):
    """Counts elements of class main-svg (plotly's drawn SVG) inside each div with an id in `ids`."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__()
        self.ids = set(ids)
        self.stack: list[str | None] = []  # the plot id each open element belongs to
        self.counts = dict.fromkeys(ids, 0)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        owner = self.stack[-1] if self.stack else None
        if a.get("id") in self.ids:
            owner = a["id"]
        if owner is not None and "main-svg" in (a.get("class") or "").split():
            self.counts[owner] += 1
        if tag not in VOID:
            self.stack.append(owner)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self.stack:
            self.stack.pop()


def console_problems(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "Uncaught" in ln or ":CONSOLE" in ln]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(make_run_dir(tmp_path_factory.mktemp("run")))


def test_report_renders_in_chromium(page: Path, tmp_path: Path) -> None:
    proc = chromium(page, tmp_path / "profile", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_problems(proc.stderr) == []
    counter = MainSvgCounter(PLOTS)
    counter.feed(proc.stdout)
    assert all(n >= 1 for n in counter.counts.values()), counter.counts  # each plot drew its SVG
    assert "+8.969" in proc.stdout  # the tables are in the rendered DOM too


def test_report_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400",
                    "--hide-scrollbars")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20) or []
    # text, tables and two arms' red and blue curves: far more than a blank or error page's few colours
    assert len(colours) > 500
    rgb = [c for _, c in colours if isinstance(c, tuple)]
    assert any(r > 180 and g < 90 and b < 90 for r, g, b in rgb), "no red (with-arm) pixels"
    assert any(b > 150 and r < 90 for r, g, b in rgb), "no blue (without-arm) pixels"


def test_console_errors_are_detected(tmp_path: Path) -> None:
    """The negative control: a page with a script error does show up in what the checks read."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><div id='cdf-rest'></div><script>nope(</script></body></html>")
    proc = chromium(bad, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught" in ln for ln in console_problems(proc.stderr))
    counter = MainSvgCounter(["cdf-rest"])
    counter.feed(proc.stdout)
    assert counter.counts == {"cdf-rest": 0}
