"""The test control plane with a fake-GPU node whose trials are the fake trial.

Real kube-apiserver, Job controller and scheduler (tests/cluster), one
LocalKubelet whose ``kubetune`` on PATH is tests/fake_trial.py's shim, and a
namespace per study. Trial Jobs are pinned to this node by hostname, so a
bench run inside a test session never lands on the session's own kubelet.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from bench.common import PYTHON, REPO, Context
from kubetune.contract import Params, TrialRequest
from kubetune.controller import optimizer, report
from kubetune.controller.study import Study
from kubetune.kubernetes import KubernetesLauncher
from kubetune.kubernetes.job import STUDY_LABEL, TRIAL_LABEL, JobSettings
from kubetune.launcher import TrialExit
from kubetune.spec import Spec
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kubelet import LocalKubelet
from tests.fake_trial import shim_dir

NODE = "bench-node"
GPUS = 8  # enough for parallel 8 with one GPU per trial


def cluster_assets() -> Path:
    """The binaries' folder (build-binaries.sh is idempotent and prints it last)."""
    out = subprocess.run(
        ["bash", str(REPO / "tests" / "cluster" / "build-binaries.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=3 * 3600,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class BenchCluster:
    kubeconfig: Path
    settings: JobSettings = field(
        default_factory=lambda: JobSettings(
            image="kubetune/trial:bench",  # never pulled: the local kubelet runs the command
            gpus=1,
            nodeSelector={"kubernetes.io/hostname": NODE},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            ttlSecondsAfterFinished=None,
            activeDeadlineSeconds=600,
            pendingTimeoutSeconds=300,
        )
    )

    def api(self) -> client.ApiClient:
        cfg = client.Configuration()
        from kubernetes import config

        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 8
        return client.ApiClient(cfg)

    def namespace(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api()).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
        return name

    def launcher(self, namespace: str, fake: str) -> KubernetesLauncher:
        """A launcher whose trials behave as ``fake`` (KUBETUNE_FAKE_TRIAL JSON) says."""
        settings = replace(self.settings, env=[{"name": "KUBETUNE_FAKE_TRIAL", "value": fake}])
        return KubernetesLauncher(self.api(), namespace, settings)


@contextmanager
def bench_cluster(work: Path, kubeconfig: Path | None = None) -> Iterator[BenchCluster]:
    """A fake-trial node on ``kubeconfig``'s control plane, or on a new one."""
    shim = shim_dir(work / "shim")
    # The shim first, then the project's venv, as base_environment would order it.
    path = os.pathsep.join([str(shim), str(Path(PYTHON).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    if kubeconfig is None:
        with (
            ControlPlane(assets=cluster_assets(), work_dir=work / "controlplane") as cp,
            _kubelet(cp.kubeconfig, work, path),
        ):
            yield BenchCluster(cp.kubeconfig)
        return
    with _kubelet(kubeconfig, work, path):
        yield BenchCluster(kubeconfig)


@contextmanager
def _kubelet(kubeconfig: Path, work: Path, path: str) -> Iterator[None]:
    """The LocalKubelet in a process of its own, as a kubelet is: its pod threads must
    not share this process's GIL with the controller under measurement."""
    argv = [PYTHON, "-m", "bench.cluster", str(kubeconfig), str(work), path]
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bench kubelet did not start (exit {proc.wait(30)})")
        yield
    finally:
        proc.stdin.close()  # the kubelet stops when its stdin closes
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve_kubelet(kubeconfig: str, work: str, path: str) -> None:
    with LocalKubelet(
        Path(kubeconfig), Path(work) / "kubelet", node_name=NODE, gpu_count=GPUS, extra_env={"PATH": path}
    ):
        print("ready", flush=True)
        sys.stdin.read()


def shared_cluster(ctx: Context) -> BenchCluster:
    """One cluster for every benchmark of a run (4 s to start, but why twice)."""
    return ctx.once("cluster", lambda: ctx.stack.enter_context(bench_cluster(ctx.work, ctx.kubeconfig)))


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
    real_publish = report.publish

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
    report.publish = publish
    try:
        yield probe
    finally:
        optimizer.suggest = real_suggest
        report.publish = real_publish
        launcher.wait, launcher.launch = real_wait, real_launch


if __name__ == "__main__":
    _serve_kubelet(*sys.argv[1:4])
