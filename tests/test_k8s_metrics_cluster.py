"""The hop's CPU and memory on a cluster, against kmock's emulator over real HTTP (tests/k8s_emulator.py):
the PodMetrics source, the absent cases (404, 503, 403), the poller over a k6 run's measured window,
the load step as Argo runs it, and RBAC for the one call the sampler makes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_emulator import EmulatedCluster, emulated_cluster
from k8s_records import NS, REPO, kserve, seldon2, seldon_v1
from kubernetes import client
from kubernetes.config import kube_config

from orchbench.core.loadtools.k6_stages import START_MARKER
from orchbench.core.platform.k8s_hops import arm_containers
from orchbench.core.platform.k8s_metrics import MetricsUnavailable, PodMetricsSource, readings
from orchbench.core.platform.k8s_metrics_window import MetricsWindow, cluster_window

MI = 1024 * 1024

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def cluster() -> Iterator[EmulatedCluster]:
    with emulated_cluster() as c:
        yield c


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _each_second(stop: threading.Event) -> Iterator[str]:
    """metrics-server's timestamps at a 1 s resolution, one a second until `stop` (a reading published
    more often would only add requests: kmock answers each in time growing with those it has seen)."""
    last = ""
    while not stop.wait(0.1):
        now = _stamp(time.time())
        if now != last:
            last = now
            yield now


def _until(done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait for `done`: on a loaded host the emulator answers slowly, and a reading may reach the
    sampler after the nominal window (a k6 that ends after its window leaves the window whole)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the sampler saw no reading in time"
        time.sleep(0.1)


def _api(cluster: EmulatedCluster, agent: str = "metrics-under-test") -> client.ApiClient:
    api = cluster.new_api_client()
    api.user_agent = agent
    return api


def test_the_source_lists_pod_metrics_by_selector(cluster: EmulatedCluster) -> None:
    cluster.serve_metrics()
    labels = {"seldon-deployment-id": "flowers-rest-with"}
    usage = {"seldon-container-engine": ("5m", "10Mi"), "flowers": ("1", "1Gi")}
    cluster.put_pod_metrics(NS, "p1", labels, "2026-01-01T00:00:15Z", "15s", usage)
    cluster.put_pod_metrics(NS, "q1", {"seldon-deployment-id": "other"}, "2026-01-01T00:00:15Z", "15s", usage)
    hop = arm_containers(seldon_v1("with"), "without").sets[0]
    items = PodMetricsSource(_api(cluster)).list(NS, hop.selector)
    (got,) = readings(items, hop)  # the emulator ignores selectors: the client filters as well
    assert got.pod == "p1" and got.cpu_cores == pytest.approx(0.005) and got.memory_bytes == 10 * MI
    sent = cluster.requests_matching("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/models/pods")
    assert sent and all(r.params.get("labelSelector") == hop.selector for r in sent)


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (None, "no metrics API on this cluster (metrics.k8s.io/v1beta1 not served"),
        (503, "the metrics API is not available (metrics-server not ready?"),
        (403, "not allowed to read the metrics API: list pods.metrics.k8s.io in models"),
    ],
)
def test_absent_metrics_api_is_one_line_and_the_run_goes_on(
    cluster: EmulatedCluster, tmp_path: Path, status: int | None, says: str
) -> None:
    if status is not None:  # None: metrics-server not installed, the group is not served (404)
        cluster.serve_metrics()
        cluster.fail("GET", "/apis/metrics.k8s.io/", status, "Failed", f"simulated {status}")
    with pytest.raises(MetricsUnavailable) as info:
        PodMetricsSource(_api(cluster)).list(NS, "a=b")
    assert says in str(info.value) and "\n" not in str(info.value)
    if status == 403:
        assert "manifests/rbac.yaml" in str(info.value)
    log = tmp_path / "k6.stderr.log"
    log.write_text(f'level=info msg="{START_MARKER}"\n')
    targets = {a: arm_containers(seldon_v1(a), "without", seldon_v1("without")) for a in ("with", "without")}
    t0 = time.monotonic()
    window = MetricsWindow(PodMetricsSource(_api(cluster)), targets, log, 0.0, 30.0, interval_s=0.2)
    with window:
        time.sleep(0.7)  # k6 (here: nothing) goes on whatever the metrics API says
    assert time.monotonic() - t0 < 5
    # refused for good (404, 403): polling stopped at the first call; 503 may pass: polled on
    assert window.polls == 1 if status != 503 else window.polls >= 3
    for arm in targets:
        rec = window.record(arm)
        assert rec["source"] == "absent" and says in rec["reason"] and "\n" not in rec["reason"]


def test_the_window_integrates_what_the_api_reports_while_k6_runs(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    """A 1 s metrics resolution, the hop at 500m and 40 MiB, a 3 s window after a 0.5 s warm-up:
    0.5 x 3 = 1.5 CPU s of the executor, the model's own figure beside it."""
    cluster.serve_metrics()
    log = tmp_path / "k6.stderr.log"
    stop = threading.Event()
    with_labels = {"seldon-deployment-id": "flowers-rest-with"}
    without_labels = {"seldon-deployment-id": "flowers-rest-without"}

    def metrics_server() -> None:
        for now in _each_second(stop):
            hop = {"seldon-container-engine": ("500m", "40Mi"), "flowers": ("2", "1Gi")}
            cluster.put_pod_metrics(NS, "with-0", with_labels, now, "1s", hop)
            cluster.put_pod_metrics(NS, "without-0", without_labels, now, "1s", {"flowers": ("250m", "1Gi")})

    server = threading.Thread(target=metrics_server, daemon=True)
    server.start()
    records = [seldon_v1("with"), seldon_v1("without")]
    spec = type("S", (), {"baseline": "without"})()
    try:
        window = cluster_window(spec, records, ["with", "without"], log, 0.5, 3.0, api_client=_api(cluster))
        window.interval_s = 0.3
        with window:
            log.write_text(f'level=info msg="{START_MARKER}"\n')  # k6's setup() ran
            time.sleep(3.5 + 1.2)  # warm-up, window, and the last reading published
            _until(
                lambda: window.record("with").get("samples", 0) >= 2 and "cpu_s" in window.record("without")
            )
    finally:
        stop.set()
        server.join(5)
    hop, model = window.record("with"), window.record("without")
    assert hop["source"] == "metrics-api" and hop["role"] == "hop"
    assert hop["cpu_s"] == pytest.approx(1.5, rel=1e-6) and hop["wall_s"] == pytest.approx(3.0)
    assert hop["peak_rss_mb"] == pytest.approx(40.0) and hop["containers"] == ["seldon-container-engine"]
    assert hop["samples"] >= 2 and hop["polls"] >= 4 and hop["basis"] == "inside"
    assert model["role"] == "model" and model["cpu_s"] == pytest.approx(0.75, rel=1e-6)
    assert model["peak_rss_mb"] == pytest.approx(1024.0)


def test_no_records_or_no_marker_is_absent_with_the_reason(tmp_path: Path) -> None:
    spec = type("S", (), {"baseline": "without"})()
    w = cluster_window(
        spec, [], ["with"], tmp_path / "k6.stderr.log", 0.0, 1.0, api_client=client.ApiClient()
    )
    with w:
        pass
    assert w.record("with") == {
        "source": "absent",
        "reason": "the load step was given no deployment records to find the arms' pods by",
    }

    class Never:
        def list(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            raise AssertionError("polled without a measured window")

    targets = {"with": arm_containers(seldon_v1("with"), "without")}
    w2 = MetricsWindow(Never(), targets, tmp_path / "k6.stderr.log", 0.0, 1.0, marker_timeout_s=0.2)
    with w2:
        time.sleep(0.4)
    assert w2.record("with")["reason"] == "k6 never reached its scenarios: no measured window sampled"


# --- the workflow passes the records; RBAC grants the sampler's one call --------------------------------


def test_every_role_grants_listing_pod_metrics_and_nothing_more_of_that_group(
    cluster: EmulatedCluster,
) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "rbac.yaml").read_text()) if d]
    roles = {d["metadata"]["namespace"]: d["rules"] for d in docs if d["kind"] == "Role"}
    for ns in ("seldon", "kserve-bench", "seldon-mesh"):
        granted = {
            (g, r, v)
            for rule in roles[ns]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
            if g == "metrics.k8s.io"
        }
        assert granted == {("metrics.k8s.io", "pods", "list")}, ns
    cluster.serve_metrics()
    source = PodMetricsSource(_api(cluster, "sampler-under-test"))
    for rec, base in ((kserve("serverless"), "raw"), (seldon2("mesh"), "direct"), (seldon_v1("with"), "")):
        for s in arm_containers(rec, base or "without").sets:
            source.list(NS, s.selector)
    calls = {
        (r.method, r.url.path.rsplit("/", 1)[-1], json.dumps(sorted(r.params)))
        for r in cluster.emulator or []
        if r.headers.get("User-Agent") == "sampler-under-test"
    }
    assert calls == {("GET", "pods", json.dumps(["labelSelector"]))}  # list, never get or watch


def test_the_stage_step_on_a_cluster_records_each_arms_hop_from_the_metrics_api(
    cluster: EmulatedCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load step as Argo runs it (its `records` argument, the spec's cluster client from the
    kubeconfig), k6 stood in for by a fake that logs the start marker, runs 1 s of warm-up and the 2 s
    window, and fails: each arm's meta.json carries the metrics API's figure all the same."""
    import base64

    from orchbench.core.arms import Endpoint
    from orchbench.core.errors import LoadTestError
    from orchbench.core.loadtools.k6 import K6Tool
    from orchbench.core.spec import parse_spec
    from pipelines.benchmark import embedded
    from steps.loadtest_stage import loadtest_stage

    cluster.serve_metrics()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emu", "cluster": {"server": cluster.host}}],
        "users": [{"name": "emu", "user": {}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
        "current-context": "emu",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    # the client reads $KUBECONFIG once, when kubernetes.config is imported: point it here too
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("ORCHBENCH_ARTIFACT_ROOT", str(tmp_path / "root"))
    payload = (REPO / "payloads" / "flowers.json").read_bytes()
    (tmp_path / "root" / "in" / "payloads").mkdir(parents=True)
    (tmp_path / "root" / "in" / "payloads" / "rest.b64").write_bytes(base64.b64encode(payload))
    spec = parse_spec(
        {
            "name": "x",
            "platform": "kubernetes",
            "manifest": str(REPO / "manifests" / "tf_flowers.yaml"),
            "payloads": {"rest": str(REPO / "payloads" / "flowers.json")},
            "transports": ["rest"],
            "blocks": 1,
            "load": {
                "tool": "k6",
                "interleave": "request",
                "stages": {"rates": [20]},
                "duration_s": 2,
                "warmup_s": 1,
                "timeout_s": 5,
            },
            "kubernetes": {"namespace": NS},
        }
    )

    windows: list[MetricsWindow] = []
    enter = MetricsWindow.__enter__

    def entered(self: MetricsWindow) -> MetricsWindow:
        windows.append(self)
        return enter(self)

    def fake_k6(self: Any, pair: Any, payload: Any, profile: Any, out_dir: Path, *a: Any, **kw: Any) -> Any:
        (out_dir / "k6.stderr.log").write_text(f'level=info msg="{START_MARKER}"\n')
        time.sleep(1 + 2 + 1.2)
        _until(lambda: windows[0].record("with")["source"] == "metrics-api")
        raise LoadTestError("k6 (stand-in): stopped after the window")

    monkeypatch.setattr(MetricsWindow, "__enter__", entered)
    monkeypatch.setattr(K6Tool, "available", lambda self: True)
    monkeypatch.setattr(K6Tool, "run_arms", fake_k6)
    stop = threading.Event()

    def publish(now: str) -> None:
        usage = {"seldon-container-engine": ("200m", "30Mi"), "flowers": ("1", "1Gi")}
        cluster.put_pod_metrics(NS, "w-0", {"seldon-deployment-id": "flowers-rest-with"}, now, "1s", usage)

    def metrics_server() -> None:
        for now in _each_second(stop):
            publish(now)

    # the pod has a reading before k6 starts, as on a cluster: the sampler's first poll learns the
    # API's 1 s resolution and polls at it (with none, it would poll every 5 s and miss the window)
    publish(_stamp(time.time()))

    server = threading.Thread(target=metrics_server, daemon=True)
    server.start()
    eps = [Endpoint("rest", a, f"{a}.svc", 8000, "flowers").to_dict() for a in ("with", "without")]
    records = [seldon_v1("with"), seldon_v1("without")]
    spec_json = json.dumps(embedded(spec).to_json_dict())
    try:
        with pytest.raises(SystemExit):
            loadtest_stage(
                spec_json,
                str(tmp_path / "state"),
                "rest",
                "rate-20",
                "0",
                json.dumps(eps),
                "0",
                json.dumps(records),
            )
    finally:
        stop.set()
        server.join(5)
    raw = tmp_path / "root" / "out" / "raw"
    hop = json.loads((raw / "with" / "meta.json").read_text())["resources"]
    model = json.loads((raw / "without" / "meta.json").read_text())["resources"]
    assert hop["source"] == "metrics-api", hop
    assert hop["cpu_s"] == pytest.approx(0.4, rel=1e-6)
    assert hop["peak_rss_mb"] == pytest.approx(30.0) and hop["sampled"][0]["containers"] == [
        "seldon-container-engine"
    ]
    assert model["source"] == "absent" and "seldon-deployment-id=flowers-rest-without" in model["reason"]
