"""Session-scoped pytest fixtures for a real test control plane and a real GPU node.

Import them into a conftest.py (tests/cluster/conftest.py does):

    from tests.cluster.fixtures import *  # or relative: from .fixtures import *

Fixtures:
  cluster_assets  -> Path        folder holding etcd, kube-apiserver, ... helm,
                                 fake-gcs-server (built by build-binaries.sh;
                                 skipped only with KUBETUNE_SKIP_CLUSTER=1)
  node_network    -> NodeNetwork   the pods' bridge; the apiserver listens on its gateway
  control_plane   -> ControlPlane  .kubeconfig .server .ca_file .api_client
  project_images  -> ProjectImages the controller and trial images (mk/build-images.sh)
  node            -> Node          kubelet + containerd node gpu-node-0, 1 nvidia.com/gpu,
                                   the project images loaded
  fake_image      -> str           tests/fake_trial.py as the trial image, loaded into the node
  kubectl         -> Kubectl       kubectl("get", "pods", "-n", ns) -> CompletedProcess
  namespace       -> str           fresh namespace enforcing restricted PSS
  kueue           -> Kueue         Kueue's manager on the control plane, its CRDs and webhooks
  queue           -> Queue         the namespace's LocalQueue "gpu-queue", 1 GPU of quota in a
                                   ClusterQueue of its own; Kueue's Job webhook sees the namespace
"""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.polling import wait_for

from .controlplane import ControlPlane
from .images import ProjectImages, fake_trial_image, pause_image
from .images import project_images as build_project_images
from .kueue import NAMESPACE_LABEL, Kueue, Queue, build_kueue
from .node import Node
from .nodenet import NodeNetwork

__all__ = [
    "Kubectl",
    "cluster_assets",
    "control_plane",
    "fake_image",
    "kubectl",
    "kueue",
    "namespace",
    "node",
    "node_network",
    "project_images",
    "queue",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-binaries.sh"
BUILD_TIMEOUT_S = 3 * 3600  # a cold build on 2 cores is long; a warm run is instant
KUBECTL = os.environ.get("KUBETUNE_KUBECTL", "/usr/bin/kubectl")
NAMESPACE_DELETE_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def cluster_assets() -> Path:
    """Build (or find) the control-plane binaries. A failed build is an error, not a skip."""
    if os.environ.get("KUBETUNE_SKIP_CLUSTER") == "1":
        pytest.skip("KUBETUNE_SKIP_CLUSTER=1")
    return build_binaries()


def build_binaries() -> Path:
    """The binaries' folder, built by build-binaries.sh when missing (it prints the folder last)."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT} failed with {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def node_network(cluster_assets: Path) -> Iterator[NodeNetwork]:
    """The bridge pods live on, with no way off the machine."""
    with NodeNetwork() as network:
        yield network


@pytest.fixture(scope="session")
def control_plane(
    cluster_assets: Path, node_network: NodeNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd + apiserver + controller-manager + scheduler; logs under <work_dir>/logs.
    The apiserver listens on the node network's gateway, and is the `kubernetes` Service there."""
    work_dir = tmp_path_factory.mktemp("controlplane")
    with ControlPlane(assets=cluster_assets, work_dir=work_dir, bind_address=node_network.gateway) as cp:
        node_network.route_kubernetes_service(cp.port)
        yield cp


@pytest.fixture(scope="session")
def project_images(cluster_assets: Path) -> ProjectImages:
    """controller/Dockerfile and trial_image/Dockerfile, built (or found) by mk/build-images.sh."""
    return build_project_images()


@pytest.fixture(scope="session")
def node(
    control_plane: ControlPlane,
    node_network: NodeNetwork,
    project_images: ProjectImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    """Node gpu-node-0: kubelet + containerd + runc, one nvidia.com/gpu, the project images loaded."""
    work_dir = tmp_path_factory.mktemp("node")
    with Node(control_plane, node_network, work_dir, pause_image()) as gpu_node:
        gpu_node.load_images([project_images.controller, project_images.trial])
        yield gpu_node


@pytest.fixture(scope="session")
def fake_image(node: Node, project_images: ProjectImages) -> str:
    """The fake trial image (tests/fake_trial.py on the controller image), loaded into the node:
    trials that sleep, fail or report epochs as a test's ``KUBETUNE_FAKE_TRIAL`` says."""
    image = fake_trial_image(project_images.controller)
    node.load_images([image])
    return image


@pytest.fixture(scope="session")
def kueue(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    """Kueue's manager as a host process (built by build-kueue.sh when missing)."""
    with Kueue(build_kueue(), control_plane, tmp_path_factory.mktemp("kueue")) as manager:
        yield manager


@pytest.fixture
def queue(kueue: Kueue, control_plane: ControlPlane, namespace: str) -> Iterator[Queue]:
    """The test's namespace behind Kueue: a LocalQueue over a ClusterQueue of 1 GPU."""
    core = client.CoreV1Api(control_plane.api_client)
    core.patch_namespace(namespace, {"metadata": {"labels": {NAMESPACE_LABEL: "true"}}})
    gpu_queue = Queue(control_plane.api_client, namespace, gpus=1)
    gpu_queue.create()
    yield gpu_queue
    gpu_queue.delete()


class Kubectl:
    """Runs kubectl against the test cluster with the admin kubeconfig."""

    def __init__(self, kubeconfig: Path, binary: str = KUBECTL) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary

    def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubeconfig)


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace labelled pod-security enforce=restricted; deleted afterwards."""
    core = client.CoreV1Api(control_plane.api_client)
    name = create_namespace(core, request.node.name)
    yield name
    delete_namespace(core, name)


def create_namespace(core: client.CoreV1Api, stem: str) -> str:
    """A fresh namespace enforcing restricted Pod Security, named after ``stem``; returns its name."""
    stem = "".join(ch if ch.isalnum() else "-" for ch in stem.lower())[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    # Pods are rejected by ServiceAccount admission until the controller made "default".
    wait_for(
        f"default ServiceAccount in {name}", lambda: core.read_namespaced_service_account("default", name), 60
    )
    return name


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    """Delete it, and wait (bounded) until its pods are gone, so that a pod of one
    test cannot hold the GPU in the next.

    The namespace controller only starts on a deleted namespace after a fixed
    5 s delay; its pods are deleted directly instead (a Terminating namespace
    admits no new pods, so Jobs cannot replace them), and the namespace object
    finishes terminating in the background."""
    try:
        core.delete_namespace(name, propagation_policy="Background")
        core.delete_collection_namespaced_pod(name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise

    def no_pods() -> bool:
        try:
            return not core.list_namespaced_pod(name).items
        except ApiException as exc:
            return bool(exc.status == 404)

    try:
        wait_for(
            f"pods of namespace {name} to be deleted", no_pods, NAMESPACE_DELETE_TIMEOUT_S, interval_s=0.25
        )
    except TimeoutError as exc:
        log.warning("%s", exc)
