"""Polling the metrics API over one load stage's measured window (k8s_metrics.py does the arithmetic).

    with MetricsWindow(source, targets, out / "k6.stderr.log", warmup_s, window_s) as w:
        runs = k6.run_arms(...)
    w.record("mesh")   # {"source": "metrics-api", "cpu_s": ..., ...} or {"source": "absent", ...}

The window is found as k6_stages.WindowSampler finds it: k6's setup() logs START_MARKER just before its
scenarios start; the measured window begins `warmup_s` after that and lasts `window_s` (cut short if
k6 ends first, which the record's `window_note` says). From the marker on, every `interval_s` (5 s:
three polls per reading at metrics-server's default 15 s resolution, so none is missed; shorter when
the API reports a shorter window) each distinct pod selector is listed once, and once more when k6 has
ended. A poll refused for good (404: no metrics API; 401/403: forbidden) ends the polling: every arm
is recorded absent with that reason and the run goes on. Other failures (503: metrics-server not
ready, the API unreachable, a time-out) are counted, the polling goes on, and an arm left with no
reading is recorded absent with the last of them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from orchbench.core.loadtools.k6_stages import MARKER_TIMEOUT_S, START_MARKER
from orchbench.core.platform.k8s_hops import ArmContainers
from orchbench.core.platform.k8s_metrics import MetricsUnavailable, Reading, absent, arm_record, readings

POLL_INTERVAL_S = 5.0
MIN_POLL_INTERVAL_S = 1.0


class Source(Protocol):
    def list(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...


class MetricsWindow:
    """Samples `targets` (arm -> ArmContainers) over the measured window of the k6 run logging to
    `log_path`. A context manager; `record(arm)` after it has exited."""

    def __init__(
        self,
        source: Source | None,
        targets: Mapping[str, ArmContainers],
        log_path: Path,
        warmup_s: float,
        window_s: float,
        interval_s: float = POLL_INTERVAL_S,
        marker_timeout_s: float = MARKER_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        unavailable: str = "",
    ) -> None:
        self.source = source
        self.targets = dict(targets)
        self.log_path = Path(log_path)
        self.warmup_s = warmup_s
        self.window_s = window_s
        self.interval_s = interval_s
        self.marker_timeout_s = marker_timeout_s
        self.clock = clock
        #: Why nothing can be sampled at all (no client, say): every arm recorded absent with it.
        self.unavailable = unavailable
        self.start: float | None = None
        self.end: float | None = None
        self.note = ""
        self.polls = 0
        self.errors: list[str] = []
        self._readings: dict[str, list[Reading]] = {arm: [] for arm in self.targets}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> MetricsWindow:
        if not self.unavailable and self.source is not None and self._sampled():
            self._thread = threading.Thread(target=self._run, name="orchbench-metrics", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 30.0)

    def _sampled(self) -> bool:
        return any(t.sets and not t.reason for t in self.targets.values())

    # --- the thread ----------------------------------------------------------------------------------
    def _marker_seen(self) -> bool:
        with contextlib.suppress(OSError):
            return START_MARKER.encode() in self.log_path.read_bytes()
        return False

    def _run(self) -> None:
        deadline = time.monotonic() + self.marker_timeout_s
        while not self._marker_seen():
            if self._stop.wait(0.05) or time.monotonic() > deadline:
                self.note = "k6 never reached its scenarios: no measured window sampled"
                return
        self.start = self.clock() + self.warmup_s
        self.end = self.start + self.window_s
        interval = self.interval_s
        while True:
            if not self._poll():
                return
            interval = self._interval(interval)
            if self._stop.wait(interval):
                break
        now = self.clock()
        if now < self.end:
            self.end = max(self.start, now)
            self.note = "k6 ended before the measured window's end: the window sampled was shorter"
        self._poll()  # the readings published since the last poll

    def _interval(self, current: float) -> float:
        """Poll three times per metrics window: never less often than every `interval_s`, never more
        often than every second (unless `interval_s` itself is shorter)."""
        windows = [r.window_s for rs in self._readings.values() for r in rs if r.window_s > 0]
        if not windows:
            return current
        return max(min(MIN_POLL_INTERVAL_S, self.interval_s), min(self.interval_s, min(windows) / 3))

    def _poll(self) -> bool:
        """List each distinct selector once; False when the API refused for good (stop polling)."""
        assert self.source is not None
        poll = self.polls
        self.polls += 1
        answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for target in self.targets.values():
            if target.reason:
                continue
            for chosen in target.sets:
                key = (target.namespace, chosen.selector)
                if key in answers:
                    continue
                try:
                    answers[key] = self.source.list(*key)
                except MetricsUnavailable as exc:
                    self.errors.append(str(exc))
                    if exc.permanent:
                        self.unavailable = str(exc)
                        return False
                    answers[key] = []
        for arm, target in self.targets.items():
            for chosen in target.sets:
                items = answers.get((target.namespace, chosen.selector), [])
                self._readings[arm].extend(readings(items, chosen, poll))
        return True

    # --- results -------------------------------------------------------------------------------------
    def record(self, arm: str) -> dict[str, Any]:
        """The arm's `resources` record (source metrics-api, or absent with the reason)."""
        target = self.targets.get(arm)
        if self.unavailable:
            return absent(self.unavailable)
        if target is None:
            return absent(f"arm {arm}: no deployment record to find its pods by")
        if target.reason:
            return absent(target.reason)
        if self.start is None or self.end is None:
            return absent(self.note or "no measured window was sampled")
        failure = ""
        if self.errors:
            failed = f"{len(self.errors)} metrics API calls failed in {self.polls} polls"
            failure = f"{failed}, the last: {self.errors[-1]}"
        out = arm_record(target, self._readings[arm], self.start, self.end, self.polls, failure)
        if self.note:
            out["window_note"] = self.note
        return out


def cluster_window(
    spec: Any,
    records: list[dict[str, Any]],
    arms: list[str],
    log_path: Path,
    warmup_s: float,
    window_s: float,
    api_client: Any = None,
) -> MetricsWindow:
    """The MetricsWindow of a stage's k6 run on a cluster: each arm's containers from its deployment
    record (the deploy step's `record` output, passed to the load step as `records`), read through the
    spec's cluster client (in-cluster in the load pod, else the kubeconfig). Without records or a
    client every arm is recorded absent with the reason; nothing here fails the run."""
    from orchbench.core.errors import OrchbenchError
    from orchbench.core.platform.k8s_hops import arm_containers
    from orchbench.core.platform.k8s_metrics import PodMetricsSource

    by_arm = {str(r.get("arm")): r for r in records if isinstance(r, dict)}
    base = by_arm.get(spec.baseline)
    targets = {a: arm_containers(by_arm[a], spec.baseline, base) for a in arms if a in by_arm}
    unavailable, source = "", None
    if not by_arm:
        unavailable = "the load step was given no deployment records to find the arms' pods by"
    else:
        try:
            if api_client is None:
                from orchbench.core.platform.k8s_common import config_from_spec
                from orchbench.core.platform.kubernetes import KubernetesPlatform

                api_client = KubernetesPlatform.from_environment(config_from_spec(spec)).api_client
            source = PodMetricsSource(api_client)
        except OrchbenchError as exc:
            unavailable = f"no Kubernetes client for the metrics API: {exc}"
    return MetricsWindow(source, targets, log_path, warmup_s, window_s, unavailable=unavailable)
