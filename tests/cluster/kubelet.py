"""LocalKubelet: a stand-in kubelet that runs pods bound to one fake GPU node as
local processes, so the real scheduler, Job controller and garbage collector can
be exercised end to end without a container runtime.

What it does, as a kubelet would:
- registers a Node (GPU capacity, labels, taint) and keeps it Ready with node
  status heartbeats and a Lease in kube-node-lease;
- watches pods with spec.nodeName == its node (relisting on 410 Gone) and runs
  each container's command+args as a process group, with the container's env,
  workingDir and volumes (configMap, secret, emptyDir, downwardAPI, projected
  service-account token via TokenRequest);
- reports Pending -> Running -> Succeeded/Failed with container states, exit
  codes and restart counts (restartPolicy Never/OnFailure/Always);
- on deletion: SIGTERM, grace period (capped), SIGKILL, then deletes the pod
  with grace 0 so the object goes away;
- logs each container's stdout+stderr to a file (see log_path/logs), since
  `kubectl logs` needs a real kubelet endpoint.

Volume mounts ("mount strategy"):
- "unshare" (preferred, used when the host allows it): each container runs in
  its own private mount namespace (`unshare --mount --propagation private`)
  with its volumes bind-mounted at their real mountPaths, so
  /var/run/secrets/kubernetes.io/serviceaccount and e.g. /etc/kubetune exist
  for that process only and `load_incluster_config()` works unmodified.
- "rewrite" (fallback without CAP_SYS_ADMIN): mountPath prefixes in
  command/args/env values/workingDir are replaced by the local directories, and
  KUBETUNE_SERVICEACCOUNT_DIR points at the local service-account directory
  (token, ca.crt, namespace). kubetune's in-cluster config loading honours that
  variable; a plain load_incluster_config() cannot work in this mode.
Force one with mount_strategy= or env KUBETUNE_KUBELET_MOUNTS=unshare|rewrite.

Not done (not needed by the tests): probes, resource enforcement, runAsUser
(processes run as the test's user), image pulls (an image's ENTRYPOINT can be
given through `entrypoints`), ephemeral containers, `kubectl logs/exec`.
The kubelet uses the admin credentials, not a system:node identity.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlparse

from tests.polling import wait_for

from ._podrunner import (
    MountpointTracker,
    MountStrategy,
    PodRunner,
    RunnerContext,
    base_environment,
    force_delete,
    now_rfc3339,
)
from ._proc import Service
from ._rest import MERGE_PATCH, ApiError, Json, Rest, WatchExpired

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT: Json = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
# Added to every new Node by the TaintNodesByCondition admission plugin; the
# node-lifecycle controller (not run here) would lift it once the node is Ready.
NOT_READY_TAINT_KEY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
WATCH_TIMEOUT_S = 5  # short server-side watch timeout: stop() is prompt
DEFAULT_INHERITED_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _probe_unshare() -> bool:
    """True when a private mount namespace with a bind mount can be made here."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "src"), Path(tmp, "dst")
        src.mkdir()
        dst.mkdir()
        (src / "probe").write_text("ok")
        script = f"mount --bind {src} {dst} && cat {dst}/probe"
        try:
            out = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        # The mount must not leak out of the namespace.
        return out.returncode == 0 and out.stdout == "ok" and not (dst / "probe").exists()


def detect_mount_strategy(requested: str = "auto") -> MountStrategy:
    choice = os.environ.get("KUBETUNE_KUBELET_MOUNTS", requested)
    if choice in ("unshare", "rewrite"):
        return cast(MountStrategy, choice)
    return "unshare" if _probe_unshare() else "rewrite"


def _micro_time() -> str:
    # coordination/v1 Lease times are MicroTime: exactly six fractional digits.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalKubelet(Service):
    """Runs the pods of one fake GPU node locally. Use as a context manager."""

    def __init__(
        self,
        kubeconfig: Path,
        work_dir: Path,
        *,
        node_name: str = "gpu-node-0",
        gpu_count: int = 1,
        mount_strategy: Literal["auto", "unshare", "rewrite"] = "auto",
        max_grace_s: float = 5.0,
        heartbeat_s: float = 5.0,
        kubelet_version: str = "v1.36.3",
        repo_root: Path = REPO_ROOT,
        inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
        extra_env: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.node_name = node_name
        self.gpu_count = gpu_count
        self.work_dir = work_dir
        self.heartbeat_s = heartbeat_s
        self.kubelet_version = kubelet_version
        self.rest = Rest(kubeconfig, pool_maxsize=32)
        server = urlparse(self.rest.server)
        self.mount_strategy: MountStrategy = detect_mount_strategy(mount_strategy)
        self._ctx = RunnerContext(
            rest=self.rest,
            node_name=node_name,
            apiserver_host=server.hostname or "127.0.0.1",
            apiserver_port=server.port or 443,
            base_env=base_environment(repo_root, inherit_env, extra_env or {}),
            mount_strategy=self.mount_strategy,
            max_grace_s=max_grace_s,
            pods_dir=work_dir / "pods",
            logs_dir=work_dir / "logs",
            mountpoints=MountpointTracker(),
            entrypoints=dict(entrypoints or {}),
        )
        self._runners: dict[str, PodRunner] = {}
        self._names: dict[tuple[str, str], PodRunner] = {}
        self._every: list[PodRunner] = []  # including those whose pod is gone but still dying
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._registered_at = now_rfc3339()

    # ---- public ---------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log.info("kubelet %s: mount strategy %s", self.node_name, self.mount_strategy)
        self._register_node()
        self._renew_lease()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "pod-watch")):
            thread = threading.Thread(target=target, name=f"kubelet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        wait_for(f"node {self.node_name} Ready and schedulable", self._node_schedulable, timeout_s)

    def stop(self) -> None:
        """Kill every pod process, remove the Node and Lease; safe to call twice."""
        self._stop.set()
        with self._lock:
            runners = list(self._every)
        for runner in runners:
            runner.shutdown()
        for runner in runners:
            runner.join(timeout=30)
        for thread in self._threads:
            thread.join(timeout=WATCH_TIMEOUT_S + 35)
        self._threads.clear()
        self._ctx.mountpoints.cleanup()
        self._delete_quietly(
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node_name}"
        )
        self._delete_quietly(f"/api/v1/nodes/{self.node_name}")
        self.rest.close()

    def log_path(self, namespace: str, pod: str, container: str | None = None) -> Path:
        """File holding stdout+stderr of a container (default: the pod's first)."""
        if container is None:
            with self._lock:
                runner = self._names.get((namespace, pod))
            if runner is None:
                found = sorted((self._ctx.logs_dir / namespace / pod).glob("*.log"))
                if not found:
                    raise KeyError(f"no logs for pod {namespace}/{pod}")
                return found[0]
            container = runner.pod["spec"]["containers"][0]["name"]
        return self._ctx.log_path(namespace, pod, container)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """Everything the container printed so far (all restarts, appended)."""
        path = self.log_path(namespace, pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- node -------------------------------------------------------------

    def _node_body(self) -> Json:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "nvidia.com/gpu.present": "true",
                    "cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
                },
            },
            "spec": {"taints": [GPU_TAINT]},
        }

    def _node_status(self) -> Json:
        resources = {
            "cpu": "16",
            "memory": "64Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
            GPU_RESOURCE: str(self.gpu_count),
        }
        now = now_rfc3339()
        conditions = [
            {
                "type": t,
                "status": "False",
                "reason": f"KubeletHasSufficient{r}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._registered_at,
            }
            for t, r in (("MemoryPressure", "Memory"), ("DiskPressure", "Disk"), ("PIDPressure", "PID"))
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "local kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._registered_at,
            }
        )
        return {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": conditions,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                    "kernelVersion": os.uname().release,
                    "osImage": "local",
                    "containerRuntimeVersion": "local://kubetune",
                    "kubeletVersion": self.kubelet_version,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            }
        }

    def _register_node(self) -> None:
        self._registered_at = now_rfc3339()
        try:
            self.rest.post("/api/v1/nodes", self._node_body())
        except ApiError as exc:
            if exc.status != 409:
                raise
            self.rest.patch(f"/api/v1/nodes/{self.node_name}", self._node_body())
        self.rest.patch(f"/api/v1/nodes/{self.node_name}/status", self._node_status())
        self._lift_not_ready_taint()

    def _lift_not_ready_taint(self) -> None:
        node = self.rest.get(f"/api/v1/nodes/{self.node_name}")
        taints = node["spec"].get("taints", [])
        kept = [t for t in taints if t["key"] != NOT_READY_TAINT_KEY]
        if kept != taints:
            # Merge patch replaces the whole list; resourceVersion guards the race.
            body = {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": kept},
            }
            self.rest.patch(f"/api/v1/nodes/{self.node_name}", body, content_type=MERGE_PATCH)

    def _node_schedulable(self) -> bool:
        node = self.rest.get(f"/api/v1/nodes/{self.node_name}")
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
        )
        blocked = any(t["key"] == NOT_READY_TAINT_KEY for t in node["spec"].get("taints", []))
        if blocked:
            self._lift_not_ready_taint()
        return ready and not blocked

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": _micro_time(),
        }
        try:
            self.rest.patch(f"{path}/{self.node_name}", {"spec": spec}, content_type=MERGE_PATCH)
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.rest.post(
                path,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node_name},
                    "spec": spec,
                },
            )

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._renew_lease()
                self.rest.patch(f"/api/v1/nodes/{self.node_name}/status", self._node_status())
            except Exception as exc:
                log.warning("kubelet heartbeat failed: %s", exc)

    def _delete_quietly(self, path: str) -> None:
        try:
            self.rest.delete(path)
        except Exception as exc:
            log.debug("delete %s: %s", path, exc)

    # ---- pods -------------------------------------------------------------

    def _watch_loop(self) -> None:
        query = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while not self._stop.is_set():
            try:
                listing = self.rest.get("/api/v1/pods", **query)
                self._resync(listing["items"])
                version = listing["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    for event in self.rest.watch(
                        "/api/v1/pods", {**query, "resourceVersion": version}, WATCH_TIMEOUT_S
                    ):
                        version = event["object"]["metadata"]["resourceVersion"]
                        self._on_event(event)
                        if self._stop.is_set():
                            break
            except WatchExpired:
                log.info("kubelet pod watch expired; relisting")
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("kubelet pod watch failed: %s; relisting", exc)
                    self._stop.wait(1.0)

    def _on_event(self, event: Json) -> None:
        kind, pod = event["type"], event["object"]
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            self._on_deleted(pod["metadata"]["uid"])
        else:
            self._sync(pod)

    def _resync(self, pods: list[Json]) -> None:
        """After a (re)list: sync every pod, and treat runners whose pod vanished as deleted."""
        present = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            vanished = [uid for uid in self._runners if uid not in present]
        for uid in vanished:
            self._on_deleted(uid)
        for pod in pods:
            self._sync(pod)

    def _on_deleted(self, uid: str) -> None:
        with self._lock:
            runner = self._runners.pop(uid, None)
        if runner is not None:
            runner.on_deleted()

    def _sync(self, pod: Json) -> None:
        meta = pod["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        with self._lock:
            runner = self._runners.get(meta["uid"])
            if (
                runner is None
                and not deleting
                and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            ):
                if self._stop.is_set():
                    return
                runner = PodRunner(self._ctx, pod)
                self._runners[runner.uid] = runner
                self._names[(runner.namespace, runner.pod_name)] = runner
                self._every.append(runner)
                runner.start()
                return
        if runner is not None:
            runner.update(pod)  # sets its deleting flag before we look at finished
            if not (deleting and runner.finished.is_set()):
                return
        if deleting and meta.get("deletionGracePeriodSeconds") != 0:
            # Nothing runs for this pod (never started, or already finished):
            # finish the deletion as the kubelet does.
            force_delete(self.rest, meta["namespace"], meta["name"], meta["uid"])

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until no pod process of this node is running (for test teardown)."""

        def idle() -> bool:
            with self._lock:
                return all(r.finished.is_set() for r in self._every)

        wait_for("kubelet idle", idle, timeout_s)

    @property
    def running_pods(self) -> list[tuple[str, str]]:
        """(namespace, name) of pods whose runner is still active."""
        with self._lock:
            return [(r.namespace, r.pod_name) for r in self._every if not r.finished.is_set()]
