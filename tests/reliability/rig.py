"""Install a study with fake trials on the test cluster, watch it, read what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import urllib3
import yaml

from kubetune.contract import result_object
from kubetune.store import NotFound, open_store
from tests import REPO
from tests.cluster.controlplane import ControlPlane
from tests.cluster.node import Node
from tests.cluster.rest import Rest, WatchExpired
from tests.fake_trial import ENV as FAKE_ENV
from tests.gcs_emulator import FakeGCS
from tests.polling import wait_for

CHART = REPO / "charts" / "kubetune"
RELEASE = "rel"
CONTROLLER = "app.kubernetes.io/component=controller"
TRIAL = "app.kubernetes.io/component=trial"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

Obj = dict[str, Any]


def fake_trial_env(fake: dict[str, Any], gcs_host: str) -> list[dict[str, str]]:
    """EnvVars that make the fake trial image behave as ``fake`` says, writing to the emulator."""
    return [
        {"name": "STORAGE_EMULATOR_HOST", "value": gcs_host},
        {"name": FAKE_ENV, "value": json.dumps(fake)},
    ]


def image_values(image: str) -> dict[str, str]:
    """Chart image values for an image pre-loaded into the node (never pulled)."""
    repository, tag = image.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}


def chart_values(
    store: str, study: dict[str, Any], env: list[dict[str, str]], images: tuple[str, str], **extra: Any
) -> dict[str, Any]:
    """Chart values for a study with fake trials on the test cluster; ``extra`` top-level values win.
    ``images``: (controller, fake trial)."""
    values: dict[str, Any] = {
        "store": store,
        "study": study,
        "image": image_values(images[0]),
        "trialImage": image_values(images[1]),
        "gpu": {"count": 1},
        # The test node has 2 CPUs, shared by the controller and fake trials that sleep.
        "resources": {
            "controller": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "trial": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        },
        # The test cluster's only node is the GPU node: the controller runs there too.
        "controller": {"tolerations": [GPU_TOLERATION]},
        "extraEnv": env,
    }
    return {**values, **extra}


def helm_install(
    assets: Path, kubeconfig: Path, namespace: str, values: dict[str, Any], folder: Path
) -> None:
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [str(assets / "helm"), "install", RELEASE, str(CHART), "-n", namespace, "-f", str(path),
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def controller_env(kubeconfig: Path, namespace: str, gcs_host: str, **extra: str) -> dict[str, str]:
    """The environment of a ``kubetune run --launcher kubernetes`` process outside the cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBETUNE_"))}
    env.update(
        KUBECONFIG=str(kubeconfig),  # api_client() falls back to it outside a pod
        KUBETUNE_NAMESPACE=namespace,
        STORAGE_EMULATOR_HOST=gcs_host,
        **extra,
    )
    return env


@dataclass(frozen=True)
class Testbed:
    """The session's test cluster with its node, fake GCS and the images a study runs."""

    assets: Path
    control_plane: ControlPlane
    node: Node
    gcs: FakeGCS
    controller_image: str
    fake_trial_image: str

    def trial_env(self, fake: dict[str, Any]) -> list[dict[str, str]]:
        return fake_trial_env(fake, self.gcs.host)

    def controller_env(self, namespace: str, **extra: str) -> dict[str, str]:
        return controller_env(self.control_plane.kubeconfig, namespace, self.gcs.host, **extra)


@dataclass
class Rig:
    """One namespace of the testbed, where a test installs a study with fake trials."""

    bed: Testbed
    namespace: str
    folder: Path  # for the values file
    rest: Rest = field(init=False)

    def __post_init__(self) -> None:
        self.rest = Rest(self.bed.control_plane.kubeconfig)

    @property
    def node(self) -> Node:
        return self.bed.node

    def install(self, store: str, study: dict[str, Any], fake: dict[str, Any], **values: Any) -> None:
        """``helm install`` the chart with fake trials behaving as ``fake`` says."""
        images = (self.bed.controller_image, self.bed.fake_trial_image)
        chart = chart_values(store, study, self.bed.trial_env(fake), images, **values)
        helm_install(self.bed.assets, self.bed.control_plane.kubeconfig, self.namespace, chart, self.folder)

    def recorder(self) -> JobRecorder:
        return JobRecorder(self.bed.control_plane.kubeconfig, self.namespace)

    def wait_controller_finished(self, timeout_s: float) -> Obj:
        return wait_controller_finished(self.rest, self.namespace, timeout_s)

    def close(self) -> None:
        self.rest.close()


class JobRecorder:
    """Every Job ADDED in a namespace, from a list+watch started before the study.

    The watch resumes from its last resourceVersion, so each Job object shows
    up once; two UIDs under one name mean the Job was created twice.
    """

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self._rest = Rest(kubeconfig)
        self._path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        self._added: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-recorder")
        self.expired = False

    def __enter__(self) -> JobRecorder:
        self._version = self._list()
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self._rest.close()

    def added(self) -> dict[str, list[str]]:
        """Job name -> the UIDs of its ADDED events, in order."""
        with self._lock:
            return {name: list(uids) for name, uids in self._added.items()}

    def _list(self) -> str:
        listing = self._rest.get(self._path)
        for job in listing["items"]:
            self._add(job)
        return str(listing["metadata"]["resourceVersion"])

    def _add(self, job: Obj) -> None:
        meta = job["metadata"]
        with self._lock:
            if meta["uid"] not in self._added[meta["name"]]:  # a relist repeats known objects
                self._added[meta["name"]].append(meta["uid"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._rest.watch(self._path, {"resourceVersion": self._version}, 5):
                    self._version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] == "ADDED":
                        self._add(event["object"])
            except WatchExpired:
                self.expired = True
                self._version = self._list()
            except Exception:
                self._stop.wait(0.5)


# --- waiting for the study --------------------------------------------------------------


def items(rest: Rest, path: str, selector: str = "") -> list[Obj]:
    """A namespaced list as plain objects, oldest first."""
    query = {"labelSelector": selector} if selector else {}
    found: list[Obj] = rest.get(path, **query)["items"]
    return sorted(found, key=lambda o: (o["metadata"]["creationTimestamp"], o["metadata"]["name"]))


def pods(rest: Rest, namespace: str, selector: str) -> list[Obj]:
    return items(rest, f"/api/v1/namespaces/{namespace}/pods", selector)


def phase(pod: Obj) -> str | None:
    value = pod.get("status", {}).get("phase")
    return str(value) if value else None


def wait_pod_running(rest: Rest, namespace: str, name: str, timeout_s: float = 60) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    wait_for(f"pod {name} Running", lambda: phase(rest.get(path)) == "Running", timeout_s)


def wait_trial_pod_running(rest: Rest, namespace: str, study: str, index: int, timeout_s: float) -> str:
    selector = f"kubetune.dev/study={study},kubetune.dev/trial={index}"

    def running() -> str | None:
        found = [p for p in pods(rest, namespace, selector) if phase(p) == "Running"]
        return str(found[0]["metadata"]["name"]) if found else None

    return wait_for(f"trial {index}'s pod Running", running, timeout_s, interval_s=0.1)


def wait_result(store: str, index: int, timeout_s: float) -> None:
    s = open_store(store)

    def written() -> bool:
        try:
            s.get(result_object(index))
        except NotFound:
            return False
        return True

    wait_for(f"trial {index}'s result in {store}", written, timeout_s, interval_s=0.1)


def controller_job(rest: Rest, namespace: str) -> Obj:
    [job] = items(rest, f"/apis/batch/v1/namespaces/{namespace}/jobs", CONTROLLER)
    return job


def finished(job: Obj) -> str | None:
    for c in job.get("status", {}).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return str(c["type"])
    return None


def wait_controller_finished(rest: Rest, namespace: str, timeout_s: float) -> Obj:
    def done() -> Obj | None:
        job = controller_job(rest, namespace)
        return job if finished(job) else None

    return wait_for("the controller Job to finish", done, timeout_s, interval_s=0.5)


def evict(rest: Rest, namespace: str, pod: str) -> None:
    """The Eviction API, as `kubectl drain` uses it: the pod gets a DisruptionTarget condition."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    rest.post(f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", body)


# --- what pods left behind ----------------------------------------------------------------


def namespace_logs(node: Node, namespace: str) -> dict[str, str]:
    """Pod name -> everything its containers printed (the kubelet's log files)."""
    return node.namespace_logs(namespace)


def pod_tokens(node: Node, pod: Obj) -> set[str]:
    """The service-account tokens the kubelet mounted into a running pod."""
    return node.pod_tokens(pod["metadata"]["uid"])


def wait_controller_token(rest: Rest, node: Node, namespace: str) -> set[str]:
    """The API token of the first controller pod, read while it runs."""

    def token() -> set[str]:
        running = [p for p in pods(rest, namespace, CONTROLLER) if phase(p) == "Running"]
        return pod_tokens(node, running[0]) if running else set()

    return wait_for("the controller pod's token", token, 60)


def status_with_token(control_plane: ControlPlane, token: str, method: str, path: str) -> int:
    """The HTTP status the apiserver answers a bearer token (and no client certificate)."""
    pool = urllib3.PoolManager(ca_certs=str(control_plane.ca_file), cert_reqs="CERT_REQUIRED", retries=False)
    body = json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}}).encode()
    resp = pool.request(
        method,
        control_plane.server + path,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=body if method == "POST" else None,
        timeout=10.0,
    )
    pool.clear()
    return int(resp.status)
