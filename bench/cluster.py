"""The test cluster on a real node, whose trials are the fake trial image.

Real kube-apiserver, Job controller and scheduler, a real node (kubelet,
containerd, runc; tests/cluster) advertising GPUS nvidia.com/gpu, the fake
trial image (tests/fake_trial.py on the controller image) and fake-gcs-server
on the node network's gateway, where trial containers write their results.
Inside a test session (the smoke test) the session's cluster is borrowed
instead: its node has one GPU, so bench trials ask for none there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from bench.common import Context
from bench.testbed import BUCKET, BenchCluster
from kubetune.contract import Params, TrialRequest
from kubetune.controller import optimizer, views
from kubetune.controller.study import Study
from kubetune.kubernetes.job import STUDY_LABEL, TRIAL_LABEL
from kubetune.launcher import TrialExit
from kubetune.spec import Spec
from kubetune.store import Store
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import build_binaries
from tests.cluster.images import fake_trial_image, pause_image, project_images
from tests.cluster.node import Node
from tests.cluster.nodenet import NodeNetwork
from tests.gcs_emulator import FakeGCS

NODE = "bench-node"
GPUS = 8  # enough for parallel 8 with one GPU per trial


def landed(store: Store, name: str) -> float:
    """When an object was written (time.time() scale): the emulator's creation time."""
    bucket, _, prefix = store.uri.removeprefix("gs://").partition("/")
    blob = _emulator_client().bucket(bucket).get_blob(f"{prefix}/{name}")
    assert blob is not None and blob.time_created is not None, f"{store.uri}/{name} not written"
    return float(blob.time_created.timestamp())


@contextmanager
def bench_cluster(work: Path) -> Iterator[BenchCluster]:
    """A control plane, a node with GPUS GPUs and the fake trial image, and an emulator."""
    assets = build_binaries()
    image = fake_trial_image(project_images().controller)
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(NodeNetwork())
        cp = stack.enter_context(
            ControlPlane(assets=assets, work_dir=work / "controlplane", bind_address=net.gateway)
        )
        net.route_kubernetes_service(cp.port)
        node = stack.enter_context(Node(cp, net, work / "node", pause_image(), name=NODE, gpu_count=GPUS))
        node.load_images([image])
        gcs = stack.enter_context(FakeGCS(assets / "fake-gcs-server", work / "gcs", address=net.gateway))
        stack.enter_context(_emulator_env(gcs.host))
        yield BenchCluster(cp.kubeconfig, node.name, image, gcs.host, control_plane=cp)


@contextmanager
def _emulator_env(host: str) -> Iterator[None]:
    """STORAGE_EMULATOR_HOST for this process's store clients, as the test session's ``gcs`` sets it."""
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if old is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


def shared_cluster(ctx: Context) -> BenchCluster:
    """One cluster for every benchmark of a run: the test session's, or one of its own."""
    cluster = ctx.cluster or ctx.stack.enter_context(bench_cluster(ctx.work))
    ctx.cluster = cluster
    from google.cloud.exceptions import Conflict

    with contextlib.suppress(Conflict):
        _emulator_client().create_bucket(BUCKET)
    return cluster


def _emulator_client() -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="kubetune-bench", credentials=AnonymousCredentials())


class JobClock:
    """Watches one namespace's trial Jobs and pods and notes when each change arrived.

    Independent of the launcher under test: these are the times any watcher
    (kubectl -w) would see, by trial index. Times are time.time(), comparable
    across processes (the fake trial's result file mtime, for one).
    """

    MARKS = ("job_added", "pod_added", "pod_scheduled", "pod_running", "pod_done", "job_done")

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.at: dict[str, dict[int, float]] = {mark: {} for mark in self.MARKS}
        self._threads = [
            threading.Thread(target=self._watch, args=(fn, namespace), daemon=True)
            for fn in (client.BatchV1Api(api).list_namespaced_job, client.CoreV1Api(api).list_namespaced_pod)
        ]
        self._watches: list[watch.Watch] = []
        self._ready = threading.Barrier(len(self._threads) + 1)

    def __enter__(self) -> JobClock:
        for t in self._threads:
            t.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self._watches:
            w.stop()

    def _watch(self, list_fn: Any, namespace: str) -> None:
        w = watch.Watch()
        self._watches.append(w)
        rv = list_fn(namespace).metadata.resource_version
        self._ready.wait(30)
        # A stopped watch ends with a broken stream; nothing to report then.
        with contextlib.suppress(Exception):
            for event in w.stream(list_fn, namespace, label_selector=STUDY_LABEL, resource_version=rv):
                self._note(event["type"], event["object"], time.time())

    def _note(self, kind: str, obj: Any, now: float) -> None:
        label = (obj.metadata.labels or {}).get(TRIAL_LABEL)
        if label is None:
            return
        index = int(label)
        for mark in self._marks(kind, obj):
            self.at[mark].setdefault(index, now)

    @staticmethod
    def _marks(kind: str, obj: Any) -> list[str]:
        added = ["job_added" if isinstance(obj, client.V1Job) else "pod_added"] if kind == "ADDED" else []
        status = obj.status
        if isinstance(obj, client.V1Job):
            conditions = (status.conditions if status else None) or []
            done = any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions)
            return added + (["job_done"] if done else [])
        phase = status.phase if status else None
        marks = added + (["pod_scheduled"] if obj.spec.node_name else [])
        if phase in ("Running", "Succeeded", "Failed"):
            marks.append("pod_running")
        if phase in ("Succeeded", "Failed"):
            marks.append("pod_done")
        return marks


@dataclass
class Probe:
    """Times of a Study's own calls, by trial index (time.time())."""

    exit_seen: dict[int, float] = field(default_factory=dict)
    suggest: dict[int, tuple[float, float]] = field(default_factory=dict)
    launch_done: dict[int, float] = field(default_factory=dict)
    publish_s: list[float] = field(default_factory=list)  # best.json, history.csv, plots
    idle_s: float = 0.0  # inside launcher.wait(): nothing to do but wait for trials


@contextmanager
def instrumented(study: Study) -> Iterator[Probe]:
    """Wrap the study's wait/launch and optimizer.suggest to note when each returned."""
    probe = Probe()
    launcher: Any = study.launcher
    real_wait, real_launch, real_suggest = launcher.wait, launcher.launch, optimizer.suggest
    real_publish = views.publish

    def wait(timeout: float) -> list[TrialExit]:
        t0 = time.time()
        exits: list[TrialExit] = real_wait(timeout)
        now = time.time()
        probe.idle_s += now - t0
        for ex in exits:
            probe.exit_seen[ex.index] = now
        return exits

    def launch(req: TrialRequest) -> None:
        real_launch(req)
        probe.launch_done[req.index] = time.time()

    def suggest(spec: Spec, index: int, *args: Any) -> Params:
        t0 = time.time()
        params = real_suggest(spec, index, *args)
        probe.suggest[index] = (t0, time.time())
        return params

    def publish(*args: Any, **kwargs: Any) -> None:
        t0 = time.time()
        real_publish(*args, **kwargs)
        probe.publish_s.append(time.time() - t0)

    launcher.wait, launcher.launch = wait, launch
    # The Study calls both through their modules, so patching the modules reaches it.
    optimizer.suggest = suggest  # type: ignore[assignment]
    views.publish = publish
    try:
        yield probe
    finally:
        optimizer.suggest = real_suggest
        views.publish = real_publish
        launcher.wait, launcher.launch = real_wait, real_launch
