"""A real Kubernetes node for the test cluster: containerd + runc + kubelet.

Everything of one node lives under its work folder: containerd's root, state,
socket and config, runc's state, the kubelet's root-dir and pod logs, the CNI
config and address leases. Pods get their network from NodeNetwork (a bridge
with no way out), and their cgroups under a cgroup root of their own.

Settings this host needs (cgroup v1, no registry.k8s.io):
- kubelet: cgroupfs driver and failCgroupV1 false; node IP and serving
  address the bridge's gateway (the kubelet refuses a loopback node IP), so
  the apiserver reaches it (logs, exec) without DNS and nothing listens on an
  outside interface; no DNS for pods (resolvConf ""); eviction and image GC
  thresholds that disk usage of a dev machine never trips (GC deleting a
  pre-loaded image would mean a pull);
- containerd: restrict_oom_score_adj (runc cannot lower the OOM score adj
  unprivileged); the sandbox image built from pause.c; every registry name
  resolved to a registry on loopback (hosts.toml), so a pull can never leave
  the machine: with nothing listening there, a pull fails at once.

The GPU is a scheduling constraint only: nvidia.com/gpu capacity is patched
into the node's status (the documented way to advertise an extended
resource), so the real scheduler bin-packs GPU requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client

from tests.polling import wait_for

from .controlplane import ControlPlane, write_kubeconfig
from .nodenet import NodeNetwork
from .proc import Service, free_ports, spawn, stop_group, tail

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_LABELS = {"nvidia.com/gpu.present": "true", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
# Pulls of any registry go here; nothing listens, so they fail fast and locally.
LOOPBACK_REGISTRY = "http://127.0.0.1:5"
MIRRORED_REGISTRIES = ("_default", "docker.io", "ghcr.io", "registry.k8s.io", "gcr.io", "quay.io")
CONTAINERD_NAMESPACE = "k8s.io"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


class NodeError(RuntimeError):
    """containerd or the kubelet failed to start."""


def _ctr_base(socket: Path) -> list[str]:
    return ["ctr", "--address", str(socket), "--namespace", CONTAINERD_NAMESPACE]


@dataclass
class Node(Service):
    """One GPU node of the test cluster. Use as a context manager.

    After __enter__: `name` is Ready and schedulable with `gpu_count` GPUs;
    load_images() puts podman-built images into its containerd.
    """

    control_plane: ControlPlane
    network: NodeNetwork
    work_dir: Path
    pause_image: str
    name: str = "gpu-node-0"
    gpu_count: int = 1
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False, repr=False)
    _stop_keeping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _keeper: threading.Thread | None = field(default=None, init=False, repr=False)

    # ---- paths ----------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.work_dir / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def kubelet_root(self) -> Path:
        return self.work_dir / "kubelet"

    @property
    def pod_logs_dir(self) -> Path:
        return self.work_dir / "pod-logs"

    @property
    def kept_logs_dir(self) -> Path:
        return self.work_dir / "kept-pod-logs"

    @property
    def cgroup_root(self) -> str:
        return f"/kubetune-{self.network.bridge}"

    # ---- lifecycle ------------------------------------------------------

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start_containerd()
        self.load_images([self.pause_image])
        self._create_cgroups()
        self._start_kubelet()
        self._advertise_gpus()
        self._keeper = threading.Thread(target=self._keep_logs, name=f"{self.name}-logs", daemon=True)
        self._keeper.start()

    def stop(self) -> None:
        """Stop every pod, then the kubelet and containerd; remove what they left. Safe twice."""
        self._stop_keeping.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        kubelet = self._procs.pop("kubelet", None)
        if kubelet is not None:
            stop_group(kubelet, STOP_GRACE_S)
        containerd = self._procs.get("containerd")
        if containerd is not None and containerd.poll() is None:
            self._remove_containers()
        self._kill_shims()
        containerd = self._procs.pop("containerd", None)
        if containerd is not None:
            stop_group(containerd, STOP_GRACE_S)
        self._unmount_all()
        self._remove_cgroups()
        # Image layers are gigabytes: only the logs stay for a post-mortem.
        for folder in ("containerd", "kubelet", "ipam"):
            shutil.rmtree(self.work_dir / folder, ignore_errors=True)
        self._delete_node_object()

    # ---- containerd -----------------------------------------------------

    def _containerd_config(self) -> str:
        cni_dir = self.work_dir / "cni"
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-kubetune.conflist").write_text(self.network.cni_conflist(self.work_dir / "ipam"))
        hosts_dir = self.work_dir / "registry-hosts"
        for registry in MIRRORED_REGISTRIES:
            folder = hosts_dir / registry
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts.toml").write_text(
                f'server = "{LOOPBACK_REGISTRY}"\n\n'
                f'[host."{LOOPBACK_REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
            )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.work_dir / "containerd" / "root"}"
state = "{self.work_dir / "containerd" / "state"}"

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.work_dir / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{self.work_dir / "containerd" / "runc"}"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{hosts_dir}"
"""

    def _start_containerd(self) -> None:
        config = self.work_dir / "containerd.toml"
        config.write_text(self._containerd_config())
        log_path = self.logs_dir / "containerd.log"
        proc = spawn(["containerd", "--config", str(config)], log_path)
        self._procs["containerd"] = proc

        def serving() -> bool:
            if proc.poll() is not None:
                raise NodeError(f"containerd exited with {proc.returncode}\n{tail(log_path)}")
            return self._ctr("version").returncode == 0

        wait_for(
            "containerd", serving, START_TIMEOUT_S, on_timeout=lambda: tail(log_path), fatal=(NodeError,)
        )

    def _ctr(self, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_ctr_base(self.socket), *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def load_images(self, images: list[str]) -> None:
        """Copy images from podman's store into containerd (podman save | ctr import)."""
        for image in images:
            save = subprocess.Popen(["podman", "save", image], stdout=subprocess.PIPE)
            assert save.stdout is not None
            try:
                imported = self._ctr("images", "import", "-", stdin=save.stdout.fileno())
            finally:
                save.stdout.close()
                save.wait(timeout=600)
            if save.returncode != 0 or imported.returncode != 0:
                raise NodeError(f"loading {image} into containerd failed: {imported.stderr.strip()}")
            log.info("node %s: loaded %s", self.name, image)

    def images(self) -> set[str]:
        """Image names containerd holds (for tests)."""
        out = self._ctr("images", "list", "--quiet").stdout
        return set(out.split())

    def pod_running(self, namespace: str, pod: str) -> bool:
        """True while a container of the pod (sandbox included) runs in containerd."""
        labels = f'labels."io.kubernetes.pod.namespace"=={namespace},labels."io.kubernetes.pod.name"=={pod}'
        ids = set(self._ctr("containers", "list", "--quiet", labels).stdout.split())
        tasks = self._ctr("tasks", "list").stdout.splitlines()[1:]
        return any(line.split()[0] in ids and "RUNNING" in line for line in tasks)

    def pod_network_namespaces(self) -> set[Path]:
        """The named network namespaces (/var/run/netns/cni-...) of running pods."""
        found: set[Path] = set()
        for line in self._ctr("tasks", "list").stdout.splitlines()[1:]:
            pid = line.split()[1]
            names = subprocess.run(
                ["ip", "netns", "identify", pid], capture_output=True, text=True, check=False
            )
            found.update(Path("/var/run/netns", name) for name in names.stdout.split())
        return found

    def _remove_containers(self) -> None:
        """Kill every task and delete every container of the node's namespace, and
        the network namespaces of their pods (the CRI would on StopPodSandbox;
        the kubelet is already gone)."""
        netns = self.pod_network_namespaces()
        for cid in self._ctr("containers", "list", "--quiet").stdout.split():
            self._ctr("tasks", "kill", "--signal", "SIGKILL", cid)
            self._ctr("tasks", "delete", "--force", cid)
            self._ctr("containers", "delete", cid)
        for path in netns:
            subprocess.run(["ip", "netns", "delete", path.name], capture_output=True, timeout=30, check=False)

    def _kill_shims(self) -> None:
        """runc shims outlive containerd by design: end ours (they name our socket)."""
        needle = f"-address {self.socket}"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "containerd-shim" in cmdline and needle in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _unmount_all(self) -> None:
        """Unmount whatever is mounted under the work folder, deepest first."""
        prefix = str(self.work_dir) + "/"
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
        for point in sorted(set(mounts), key=lambda p: p.count("/"), reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30, check=False)

    def _cgroup_dirs(self) -> list[Path]:
        """The node's cgroup root in each hierarchy (v1), or in the unified one (v2)."""
        base = Path("/sys/fs/cgroup")
        name = self.cgroup_root.lstrip("/")
        if (base / "cgroup.controllers").exists():
            return [base / name]
        hierarchies = [h for h in sorted(base.iterdir()) if h.is_dir() and not h.is_symlink()]
        return [h / name for h in hierarchies if h.name != "unified"]

    def _create_cgroups(self) -> None:
        """The kubelet wants its cgroupRoot to exist in every hierarchy."""
        for folder in self._cgroup_dirs():
            folder.mkdir(exist_ok=True)
            if folder.parent.name == "cpuset":  # v1 cpusets start empty: inherit the parent's
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (folder / knob).write_text((folder.parent / knob).read_text())
            if folder.parent == Path("/sys/fs/cgroup"):  # v2: let the kubelet's children use them
                controllers = (folder / "cgroup.controllers").read_text().split()
                (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))

    def _remove_cgroups(self) -> None:
        """rmdir the node's cgroup trees, children first; on v1 also the one runc
        adds in the unified (v2) hierarchy, which the kubelet does not need created."""
        unified = Path("/sys/fs/cgroup/unified") / self.cgroup_root.lstrip("/")
        for top in [*self._cgroup_dirs(), unified]:
            if not top.is_dir():
                continue
            for folder in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir():
                    folder.rmdir()
            top.rmdir()

    # ---- kubelet --------------------------------------------------------

    def _kubelet_config(self, port: int) -> dict[str, object]:
        pki = self.control_plane.pki
        assert pki is not None
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.network.gateway,
            "port": port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.pod_logs_dir),
            "resolvConf": "",
            "failSwapOn": False,
            # No host-wide KUBE-* chains (firewall, canary): the node network's own
            # chain isolates pods, and a second session must not share rules.
            "makeIPTablesUtilChains": False,
            "registerWithTaints": [GPU_TAINT],
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            # Status every few seconds: tests wait on what the kubelet reports.
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
        }

    def _start_kubelet(self) -> None:
        pki = self.control_plane.pki
        assert pki is not None
        (port,) = free_ports(1)
        # Per node: a second node (the teardown test) must not overwrite the first one's identity.
        cert, key = pki.client_cert(f"kubelet-{self.name}", f"system:node:{self.name}", "system:nodes")
        kubeconfig = write_kubeconfig(
            self.work_dir / "kubelet.kubeconfig", self.control_plane.server, pki.ca_cert, cert, key, "kubelet"
        )
        config = self.work_dir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_config(port), sort_keys=False))
        labels = ",".join(f"{k}={v}" for k, v in GPU_LABELS.items())
        log_path = self.logs_dir / "kubelet.log"
        proc = spawn(
            [
                str(self.control_plane.assets / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.kubelet_root}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.gateway}",
                f"--node-labels={labels}",
                "--v=2",
            ],
            log_path,
        )
        self._procs["kubelet"] = proc
        core = client.CoreV1Api(self.control_plane.api_client)

        def ready() -> bool:
            if proc.poll() is not None:
                raise NodeError(f"kubelet exited with {proc.returncode}\n{tail(log_path)}")
            node = core.read_node(self.name).to_dict(serialize=True)
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            taints = {t["key"] for t in node["spec"].get("taints", [])}
            return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints

        wait_for(
            f"node {self.name} Ready",
            ready,
            START_TIMEOUT_S,
            interval_s=0.5,
            on_timeout=lambda: tail(log_path),
            fatal=(NodeError,),
        )

    def _advertise_gpus(self) -> None:
        core = client.CoreV1Api(self.control_plane.api_client)
        body = {"status": {"capacity": {GPU_RESOURCE: str(self.gpu_count)}}}
        core.patch_node_status(self.name, body)

        def allocatable() -> bool:
            node = core.read_node(self.name).to_dict(serialize=True)
            return bool(node["status"]["allocatable"].get(GPU_RESOURCE) == str(self.gpu_count))

        wait_for(f"{GPU_RESOURCE} allocatable on {self.name}", allocatable, 30)

    def _delete_node_object(self) -> None:
        try:
            core = client.CoreV1Api(self.control_plane.api_client)
            core.delete_node(self.name)
        except Exception as exc:  # the control plane may be gone already
            log.debug("node %s not deleted: %s", self.name, exc)

    def _keep_logs(self) -> None:
        """Hard-link every container log file the kubelet creates into kept_logs_dir.

        The kubelet deletes a pod's logs with the pod; tests read the logs of
        deleted pods (a killed controller's last words). A hard link keeps the
        file, which the runtime goes on appending to until the container ends.
        """
        while not self._stop_keeping.wait(0.2):
            # A pod's folder can vanish mid-glob: one pass lost, never the thread (and every later log).
            with contextlib.suppress(OSError):
                self._keep_new_logs()

    def _keep_new_logs(self) -> None:
        for path in self.pod_logs_dir.glob("*/*/*.log"):
            kept = self.kept_logs_dir / path.relative_to(self.pod_logs_dir)
            if kept.exists():
                continue
            kept.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError, FileExistsError):
                os.link(path, kept)

    def namespace_logs(self, namespace: str) -> dict[str, str]:
        """Pod name -> every line its containers printed, deleted pods included
        (kept by _keep_logs until the node stops)."""
        found: dict[str, str] = {}
        for folder in sorted(self.kept_logs_dir.glob(f"{namespace}_*")):
            pod = folder.name.split("_")[1]
            text = "".join(_cri_log_text(f) for f in sorted(folder.glob("*/*.log")))
            found[pod] = found.get(pod, "") + text
        return found

    def logs(self, namespace: str, pod: str) -> str:
        """Everything one pod's containers printed ("" before it started)."""
        return self.namespace_logs(namespace).get(pod, "")

    def pod_tokens(self, pod_uid: str) -> set[str]:
        """The ServiceAccount tokens the kubelet mounted into a pod."""
        volumes = self.kubelet_root / "pods" / pod_uid / "volumes" / "kubernetes.io~projected"
        return {f.read_text().strip() for f in volumes.glob("*/token")}


def _cri_log_text(path: Path) -> str:
    """The messages of a CRI log file (lines: TIMESTAMP STREAM P|F MESSAGE)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        out.append(parts[3] + ("\n" if parts[2] == "F" else "") if len(parts) == 4 else line + "\n")
    return "".join(out)
