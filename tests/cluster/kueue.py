"""Kueue's manager, run as a host process against the test control plane.

Built from the Go module proxy by build-kueue.sh, which also copies the
module's CRDs and webhook configurations into the assets folder. The fixture
installs the CRDs, serves Kueue's webhooks on 127.0.0.1 with a certificate
of the test CA (the apiserver runs on this host, so it reaches them there),
and registers only the webhooks of what the tests use (batch Jobs and
Kueue's own objects), for the namespaces labelled ``NAMESPACE_LABEL``:
every other test's Jobs never pass through Kueue. On stop it removes its
webhook configurations first, so that nothing is left calling a port that
is gone; the CRDs go with the control plane.
"""

from __future__ import annotations

import base64
import logging
import shutil
import socket
import subprocess
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.polling import wait_for

from .controlplane import ControlPlane
from .proc import Service, free_ports, spawn, stop_group, tail

log = logging.getLogger(__name__)

BUILD_SCRIPT = Path(__file__).resolve().parent / "build-kueue.sh"
NAMESPACE_LABEL = "kubetune-test/kueue"  # namespaces whose Jobs Kueue's webhooks see
# Kueue's webhooks for the objects the tests create; the rest (pods, Deployments,
# Ray, Kubeflow, ...) would only add a way for unrelated tests to fail.
WEBHOOK_PATHS = ("-batch-v1-job", "-kueue-x-k8s-io-")
CONFIGURATIONS = {
    "MutatingWebhookConfiguration": "kubetune-test-kueue-mutating",
    "ValidatingWebhookConfiguration": "kubetune-test-kueue-validating",
}
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0


class KueueExited(RuntimeError):
    pass


def build_kueue() -> Path:
    """The assets folder with kueue and kueue-config/ in it, built when missing."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with {proc.returncode}\n{proc.stderr[-8000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class Kueue(Service):
    assets: Path
    control_plane: ControlPlane
    work_dir: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        return self.work_dir / "kueue.log"

    def start(self) -> None:
        api = self.control_plane.api_client
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._install_crds()
        webhook_port, health_port = free_ports(2)
        certs = self._serving_certs()
        config = self.work_dir / "config.yaml"
        config.write_text(yaml.safe_dump(_configuration(webhook_port, health_port, certs)))
        kueue = [
            str(self.assets / "kueue"),
            f"--config={config}",
            f"--kubeconfig={self.control_plane.kubeconfig}",
            "--zap-log-level=2",
        ]
        # Without its internal cert management (whose certificates name an in-cluster
        # Service, which the apiserver on this host cannot resolve), Kueue reads its
        # metrics certificate from a fixed /etc/kueue path. Rather than write to the
        # host's /etc, it runs in a mount namespace of its own where /etc is a tmpfs
        # holding that path: nothing outlives the process. Its kubeconfig names the
        # apiserver by IP, so the hidden resolver files are never read.
        mount_etc = (
            "mount -t tmpfs kubetune-kueue-etc /etc && mkdir -p /etc/kueue/metrics && "
            f'ln -s "{certs}" /etc/kueue/metrics/certs && exec "$@"'
        )
        argv = ["unshare", "--mount", "--propagation=private", "sh", "-c", mount_etc, "kueue", *kueue]
        self._proc = spawn(argv, self.log_file, cwd=self.work_dir)
        self._wait_ready(health_port, webhook_port)
        self._register_webhooks(client.AdmissionregistrationV1Api(api), webhook_port)

    def stop(self) -> None:
        if self.control_plane.port:
            self._unregister_webhooks(client.AdmissionregistrationV1Api(self.control_plane.api_client))
        if self._proc is not None:
            code = stop_group(self._proc, STOP_GRACE_S)
            log.debug("kueue exited with %s", code)
            self._proc = None

    # --- pieces ---------------------------------------------------------------

    def _install_crds(self) -> None:
        ext = client.ApiextensionsV1Api(self.control_plane.api_client)
        names = []
        for path in sorted((self.assets / "kueue-config" / "crd").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            ext.create_custom_resource_definition(crd)  # a fresh control plane each session: none exist
            names.append(crd["metadata"]["name"])

        def established() -> bool:
            for name in names:
                status = ext.read_custom_resource_definition(name).status
                conditions = (status.conditions if status else None) or []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
            return True

        wait_for("Kueue's CRDs established", established, 60, interval_s=0.25)

    def _serving_certs(self) -> Path:
        """The apiserver's serving pair (127.0.0.1 is among its names), as Kueue reads a cert dir."""
        pki = self.control_plane.pki
        assert pki is not None
        folder = self.work_dir / "certs"
        folder.mkdir(exist_ok=True)
        shutil.copy(pki.serving_cert, folder / "tls.crt")
        shutil.copy(pki.serving_key, folder / "tls.key")
        return folder

    def _wait_ready(self, health_port: int, webhook_port: int) -> None:
        """Its readiness probe passes and its webhook server takes connections (the apiserver
        calls a webhook once, failing the request if nothing listens)."""
        proc = self._proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                raise KueueExited(f"kueue exited with {proc.returncode}\n{tail(self.log_file)}")
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=5) as resp:
                if resp.status != 200:
                    return False
            with socket.create_connection(("127.0.0.1", webhook_port), timeout=5):
                return True

        logs = partial(tail, self.log_file)
        wait_for("kueue ready", ready, START_TIMEOUT_S, interval_s=0.5, on_timeout=logs, fatal=(KueueExited,))

    def _register_webhooks(self, admission: client.AdmissionregistrationV1Api, port: int) -> None:
        ca_bundle = base64.b64encode(self.control_plane.ca_file.read_bytes()).decode()
        for doc in yaml.safe_load_all((self.assets / "kueue-config" / "webhooks.yaml").read_text()):
            if not doc:
                continue
            doc["metadata"] = {"name": CONFIGURATIONS[doc["kind"]]}
            doc["webhooks"] = [_local(w, port, ca_bundle) for w in doc["webhooks"] if _wanted(w)]
            create = (
                admission.create_mutating_webhook_configuration
                if doc["kind"] == "MutatingWebhookConfiguration"
                else admission.create_validating_webhook_configuration
            )
            create(doc)

    def _unregister_webhooks(self, admission: client.AdmissionregistrationV1Api) -> None:
        for kind, name in CONFIGURATIONS.items():
            delete = (
                admission.delete_mutating_webhook_configuration
                if kind == "MutatingWebhookConfiguration"
                else admission.delete_validating_webhook_configuration
            )
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _configuration(webhook_port: int, health_port: int, certs: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},  # no metrics listener
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(certs)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},  # the fixture's certificate, not a Secret's
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},  # no aggregated API server to run
    }


def _wanted(webhook: dict[str, Any]) -> bool:
    path = webhook["clientConfig"]["service"]["path"]
    return any(part in path for part in WEBHOOK_PATHS)


def _local(webhook: dict[str, Any], port: int, ca_bundle: str) -> dict[str, Any]:
    """The webhook, called at Kueue's host port instead of its in-cluster Service."""
    path = webhook["clientConfig"]["service"]["path"]
    out = {**webhook, "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}}
    if "-batch-v1-job" in path:
        out["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: "true"}}
    return out


KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
FLAVOR = "kubetune-test-gpu"
HIGH_PRIORITY = "kubetune-test-high"  # a WorkloadPriorityClass above every trial's
LOCAL_QUEUE = "gpu-queue"


@dataclass
class Queue:
    """A ClusterQueue with ``gpus`` nvidia.com/gpu of quota (CPU and memory unbounded in
    practice), that preempts lower-priority work for higher, and a LocalQueue
    ``LOCAL_QUEUE`` for it in one namespace."""

    api: client.ApiClient
    namespace: str
    gpus: int

    @property
    def cluster_queue(self) -> str:
        return f"cq-{self.namespace}"

    def create(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        for plural, body in (
            ("resourceflavors", {"metadata": {"name": FLAVOR}, "spec": {}}),
            ("workloadpriorityclasses", {"metadata": {"name": HIGH_PRIORITY}, "value": 1000}),
        ):
            try:
                objects.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, _kind(plural, body))
            except ApiException as exc:
                if exc.status != 409:  # made by an earlier test: the same object
                    raise
        quotas = [("cpu", "64"), ("memory", "256Gi"), ("nvidia.com/gpu", str(self.gpus))]
        cq = {
            "metadata": {"name": self.cluster_queue},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                "preemption": {"withinClusterQueue": "LowerPriority"},
                "resourceGroups": [
                    {
                        "coveredResources": [name for name, _ in quotas],
                        "flavors": [
                            {
                                "name": FLAVOR,
                                "resources": [{"name": n, "nominalQuota": q} for n, q in quotas],
                            }
                        ],
                    }
                ],
            },
        }
        objects.create_cluster_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", _kind("clusterqueues", cq)
        )
        lq = {"metadata": {"name": LOCAL_QUEUE}, "spec": {"clusterQueue": self.cluster_queue}}
        objects.create_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, self.namespace, "localqueues", _kind("localqueues", lq)
        )

    def delete(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        try:
            objects.delete_cluster_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", self.cluster_queue
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def workloads(self) -> list[dict[str, Any]]:
        listed: Any = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, self.namespace, "workloads"
        )
        return list(listed["items"])


_KINDS = {
    "resourceflavors": "ResourceFlavor",
    "workloadpriorityclasses": "WorkloadPriorityClass",
    "clusterqueues": "ClusterQueue",
    "localqueues": "LocalQueue",
}


def _kind(plural: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": _KINDS[plural], **body}
