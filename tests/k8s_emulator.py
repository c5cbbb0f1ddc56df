"""kmock's KubernetesEmulator on loopback in a background thread, for the synchronous kubernetes client.

The emulator is an aiohttp app; the kubernetes client is blocking. So the emulator runs in its own thread
with its own event loop, and tests talk to it over real HTTP on 127.0.0.1:<random port> with a real
`kubernetes.client.ApiClient`. State changes made "by the cluster" (the Seldon operator marking a
deployment Available, the kubelet creating Ready pods) are made by the test over the same HTTP API, so
that watch streams see them as MODIFIED/ADDED events, exactly as on a real cluster.

What the emulator does not do (checked in kmock 0.8's source): label and field selectors are ignored on
list and watch (the platform filters client-side as well, see orchbench/core/platform/kubernetes.py); PUT
(replace) is not recognised as an update; `timeoutSeconds` on watches is ignored (the client-side read
timeout ends them); merge patches replace lists wholesale and delete keys set to null.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import kmock
from kubernetes import client

SELDON_RESOURCES = (
    "machinelearning.seldon.io/v1/seldondeployments",
    "machinelearning.seldon.io/v1alpha2/seldondeployments",
)
CORE_RESOURCES = ("v1/nodes", "v1/pods", "v1/events")
#: The resource metrics API's PodMetrics (metrics-server). Not served unless `serve_metrics()` is called:
#: a cluster without metrics-server answers 404 there, as the emulator then does.
METRICS_RESOURCE = "metrics.k8s.io/v1beta1/pods"


class EmulatedCluster:
    """A running emulator: `.api_client` is a kubernetes ApiClient pointed at it; `.emulator` is kmock's."""

    def __init__(self) -> None:
        self.emulator: kmock.KubernetesEmulator | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock-emulator", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"kmock emulator did not start within {timeout_s}s")
        if self._error is not None:
            raise RuntimeError(f"kmock emulator failed to start: {self._error!r}")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"kmock emulator did not stop within {timeout_s}s")

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            for res in (*CORE_RESOURCES, *SELDON_RESOURCES):
                emulator.resources[res] = kmock.ResourceInfo(namespaced=res != "v1/nodes")
            self.emulator = emulator
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    # --- clients ---------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_api_client(self) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host = self.host
        return client.ApiClient(cfg)

    def refuse(self, method: str, path_prefix: str) -> None:
        """Answer 404 "resource not found" to `method` requests under `path_prefix` (an uninstalled CRD)."""
        assert self.emulator is not None
        pattern = re.compile(re.escape(path_prefix) + ".*")  # kmock full-matches paths
        self.emulator[method, pattern] << kmock.KubernetesResourceNotFoundError

    def fail(self, method: str, path_prefix: str, status: int, reason: str, message: str) -> None:
        """Answer `status` (a Kubernetes Status body) to `method` requests under `path_prefix`."""
        assert self.emulator is not None
        pattern = re.compile(re.escape(path_prefix) + ".*")
        self.emulator[method, pattern] << kmock.KubernetesError(status=status, reason=reason, message=message)

    # --- the metrics API (PodMetrics), fed by the test ---------------------------------------------
    def serve_metrics(self) -> None:
        """Serve metrics.k8s.io/v1beta1 PodMetrics (read by the emulator on each request)."""
        assert self.emulator is not None
        self.emulator.resources[METRICS_RESOURCE] = kmock.ResourceInfo(namespaced=True)

    def put_pod_metrics(
        self,
        namespace: str,
        pod: str,
        labels: dict[str, str],
        timestamp: str,
        window: str,
        usage: dict[str, tuple[str, str]],
    ) -> None:
        """Publish a pod's reading as metrics-server would: `usage` container -> (cpu, memory) quantities
        over [timestamp - window, timestamp]. Replaces the pod's previous reading (a new client, so
        requests under test are told apart by their user agent)."""
        api = client.CustomObjectsApi(self.new_api_client())
        group, version, plural = METRICS_RESOURCE.split("/")
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": "PodMetrics",
            "metadata": {"name": pod, "namespace": namespace, "labels": dict(labels)},
            "timestamp": timestamp,
            "window": window,
            "containers": [
                {"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, (cpu, mem) in usage.items()
            ],
        }
        try:  # patched in place: a delete and a create would leave a moment with no reading to list
            api.patch_namespaced_custom_object(group, version, namespace, plural, pod, body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            api.create_namespaced_custom_object(group, version, namespace, plural, body)

    def requests_matching(self, method: str, path_part: str) -> list[kmock.Request]:
        """Requests the emulator received (for asserting that selectors were sent to the server)."""
        assert self.emulator is not None
        return [r for r in list(self.emulator) if r.method == method and path_part in str(r.url)]


@contextmanager
def emulated_cluster() -> Iterator[EmulatedCluster]:
    cluster = EmulatedCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
