"""Run one pod's containers as local processes and report its status (kubelet work)."""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from ._proc import signal_group, spawn
from ._rest import ApiError, Json, Rest
from ._volumes import VolumeError, field_value, materialise, resource_value

log = logging.getLogger(__name__)

T = TypeVar("T")
MountStrategy = Literal["unshare", "rewrite"]
REPO_ROOT = Path(__file__).resolve().parents[2]

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# Rewrite mode only: the process cannot see files at SA_MOUNT_PATH, so the
# kubelet tells it where the token/ca.crt/namespace files are instead. kubetune's
# product code honours this variable when it loads in-cluster config.
SA_DIR_ENV = "KUBETUNE_SERVICEACCOUNT_DIR"
POD_IP = "127.0.0.1"
SETUP_RETRY_S = 1.0
STATUS_RETRIES = 10


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand_refs(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known vars are replaced, $$ escapes, others stay."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, value)


def _active_mountpoints() -> set[str]:
    """Mount points in every mount namespace on the host (one mountinfo per namespace)."""
    seen_ns: set[str] = set()
    points: set[str] = set()
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            ns = os.readlink(proc_dir / "ns" / "mnt")
            if ns in seen_ns:
                continue
            seen_ns.add(ns)
            text = (proc_dir / "mountinfo").read_text()
        except OSError:
            continue  # exited meanwhile, or not ours to read
        for line in text.splitlines():
            fields = line.split(" ")
            if len(fields) > 4:
                # mountinfo escapes space, tab, newline and backslash as octal.
                points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


class MountpointTracker:
    """Creates missing mount-point paths on the host and removes them at shutdown.

    Bind mounts need an existing target. The mounts themselves live only in each
    process's private mount namespace, but the empty directory (or file) that
    serves as target is created on the host, once, and removed when the kubelet
    stops, if still empty and not a mount point in some other namespace (another
    test session's kubelet may be using the same path: removing it would
    detach that mount).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._created: list[Path] = []

    def ensure(self, path: Path, is_file: bool) -> None:
        with self._lock:
            missing: list[Path] = []
            probe = path
            while not probe.exists() and not probe.is_symlink():
                missing.append(probe)
                probe = probe.parent
            for item in reversed(missing):
                if item == path and is_file:
                    item.touch()
                else:
                    item.mkdir(exist_ok=True)
                self._created.append(item)

    def cleanup(self) -> None:
        with self._lock:
            in_use = _active_mountpoints() if self._created else set()
            for item in reversed(self._created):
                if str(item) in in_use or os.path.realpath(item) in in_use:
                    continue
                try:
                    if item.is_dir():
                        item.rmdir()
                    elif item.stat().st_size == 0:
                        item.unlink()
                except OSError as exc:
                    log.debug("left mount point %s: %s", item, exc)
            self._created.clear()


@dataclass
class RunnerContext:
    """What every pod runner needs from the kubelet."""

    rest: Rest
    node_name: str
    apiserver_host: str
    apiserver_port: int
    base_env: Mapping[str, str]
    mount_strategy: MountStrategy
    max_grace_s: float
    pods_dir: Path
    logs_dir: Path
    mountpoints: MountpointTracker
    entrypoints: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.logs_dir / namespace / pod / f"{container}.log"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None


class ConfigError(Exception):
    """Container config refers to something missing (CreateContainerConfigError)."""


def _env_from_sources(ctx: RunnerContext, pod: Json, spec: Json, env: dict[str, str]) -> None:
    ns = pod["metadata"]["namespace"]
    for source in spec.get("envFrom", []):
        prefix = source.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            if kind not in source:
                continue
            ref = source[kind]
            plural = "configmaps" if kind == "configMapRef" else "secrets"
            try:
                obj = ctx.rest.get(f"/api/v1/namespaces/{ns}/{plural}/{ref['name']}")
            except ApiError as exc:
                if exc.status == 404 and ref.get("optional"):
                    continue
                raise ConfigError(f"{kind} {ref['name']}: {exc}") from exc
            for key, value in obj.get("data", {}).items():
                env[prefix + key] = _decode(kind, value)


def _decode(kind: str, value: str) -> str:
    if kind in ("secretRef", "secretKeyRef"):
        return base64.b64decode(value).decode(errors="replace")
    return value


def _key_ref(ctx: RunnerContext, ns: str, kind: str, ref: Json) -> str | None:
    plural = "configmaps" if kind == "configMapKeyRef" else "secrets"
    try:
        obj = ctx.rest.get(f"/api/v1/namespaces/{ns}/{plural}/{ref['name']}")
    except ApiError as exc:
        if exc.status == 404 and ref.get("optional"):
            return None
        raise ConfigError(f"{kind} {ref['name']}: {exc}") from exc
    data = obj.get("data", {})
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f"{kind} {ref['name']} has no key {ref['key']}")
    return _decode(kind, data[ref["key"]])


def container_env(ctx: RunnerContext, pod: Json, spec: Json) -> dict[str, str]:
    """Process environment: inherited basics, service env, envFrom, then env (in order)."""
    port = str(ctx.apiserver_port)
    env = dict(ctx.base_env)
    env.update(
        {
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": ctx.apiserver_host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{ctx.apiserver_host}:{port}",
        }
    )
    _env_from_sources(ctx, pod, spec, env)
    ns = pod["metadata"]["namespace"]
    for item in spec.get("env", []):
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand_refs(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            value = resource_value(pod, source["resourceFieldRef"], spec["name"])
        elif "configMapKeyRef" in source:
            value = _key_ref(ctx, ns, "configMapKeyRef", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _key_ref(ctx, ns, "secretKeyRef", source["secretKeyRef"])
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def _entrypoint(ctx: RunnerContext, spec: Json) -> list[str]:
    """command + args; without command, the image's registered entrypoint (if any)."""
    command = list(spec.get("command") or [])
    if not command:
        image = spec.get("image", "")
        bare = re.sub(r"(@sha256:[0-9a-f]+|:[^/:]+)$", "", image)
        command = list(ctx.entrypoints.get(image) or ctx.entrypoints.get(bare) or [])
    argv = command + list(spec.get("args") or [])
    if not argv:
        raise ConfigError(f"container {spec['name']}: no command (and no entrypoint known for its image)")
    return argv


def _mounts(spec: Json, volume_paths: Mapping[str, Path]) -> list[tuple[str, Path, bool]]:
    """(mountPath, local source, readOnly) for each volumeMount."""
    mounts: list[tuple[str, Path, bool]] = []
    for vm in spec.get("volumeMounts", []):
        source = volume_paths[vm["name"]]
        if vm.get("subPath"):
            source = source / vm["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append((vm["mountPath"].rstrip("/") or "/", source, bool(vm.get("readOnly"))))
    return mounts


def _rewrite(value: str, mounts: Sequence[tuple[str, Path, bool]]) -> str:
    # Longest mountPath first, so /etc/a/b wins over /etc/a.
    for mount_path, source, _ in sorted(mounts, key=lambda m: -len(m[0])):
        pattern = re.escape(mount_path) + r"(?=/|$|[^\w.-])"
        local = str(source).replace("\\", "\\\\")  # literal in the replacement template
        value = re.sub(pattern, local, value)
    return value


def build_launch(
    ctx: RunnerContext, pod: Json, spec: Json, volume_paths: Mapping[str, Path], scratch: Path
) -> Launch:
    """How to start one container locally, under the kubelet's mount strategy."""
    argv_raw = _entrypoint(ctx, spec)
    env = container_env(ctx, pod, spec)
    argv = [expand_refs(a, env) for a in argv_raw]
    mounts = _mounts(spec, volume_paths)
    workdir = spec.get("workingDir") or ""
    if ctx.mount_strategy == "rewrite":
        spec_env = {e["name"] for e in spec.get("env", [])}
        env = {k: (_rewrite(v, mounts) if k in spec_env else v) for k, v in env.items()}
        for mount_path, source, _ in mounts:
            if mount_path == SA_MOUNT_PATH:
                env[SA_DIR_ENV] = str(source)
        cwd = Path(_rewrite(workdir, mounts)) if workdir else scratch
        cwd.mkdir(parents=True, exist_ok=True)
        return Launch([_rewrite(a, mounts) for a in argv], env, cwd)
    # No workingDir: "/", as a runtime without an image WORKDIR would (the scratch
    # folder may sit under a mount such as an emptyDir at /tmp).
    keep = [str(REPO_ROOT), *env.get("PATH", "").split(os.pathsep)]
    return Launch(_unshare_argv(ctx, argv, mounts, workdir or "/", keep), env, None)


def _mount_order(mounts: Sequence[tuple[str, Path, bool]]) -> list[tuple[str, Path, bool]]:
    """Parents before children; and a mount over a folder holding other mounts' sources
    (an emptyDir at /tmp over the kubelet's work dir under /tmp) after all the others."""

    def shadows(mount_path: str) -> bool:
        prefix = mount_path.rstrip("/") + "/"
        return any(str(source).startswith(prefix) for _, source, _ in mounts)

    return sorted(mounts, key=lambda m: (shadows(m[0]), m[0].count("/")))


def _hidden_by(mounts: Sequence[tuple[str, Path, bool]], keep: Sequence[str]) -> list[str]:
    """The existing folders of ``keep`` that some mountPath would cover."""
    covered = [mp.rstrip("/") + "/" for mp, _, _ in mounts]
    return [p for p in dict.fromkeys(keep) if Path(p).is_dir() and any(p.startswith(c) for c in covered)]


def _unshare_argv(
    ctx: RunnerContext,
    argv: list[str],
    mounts: Sequence[tuple[str, Path, bool]],
    workdir: str,
    keep: Sequence[str] = (),
) -> list[str]:
    """Wrap argv: private mount namespace, bind each volume at its real mountPath."""
    lines = ["set -e"]
    hidden = _hidden_by(mounts, keep)
    if hidden:
        # These host folders (the repo and its venv, PATH entries) lie under a
        # mountPath such as an emptyDir at /tmp: stash them in a private tmpfs
        # and bind them back on top, so the pod's command still resolves.
        lines.append("mount -t tmpfs kubelet-stash /mnt")
        for i, path in enumerate(hidden):
            lines += [f"mkdir -p /mnt/keep{i}", f"mount --bind {shlex.quote(path)} /mnt/keep{i}"]
    for mount_path, source, read_only in _mount_order(mounts):
        ctx.mountpoints.ensure(Path(mount_path), is_file=source.is_file())
        target, src = shlex.quote(mount_path), shlex.quote(str(source))
        lines.append(f"mount --bind {src} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    for i, path in enumerate(hidden):
        lines += [f"mkdir -p {shlex.quote(path)}", f"mount --bind /mnt/keep{i} {shlex.quote(path)}"]
    if any(workdir == mp or workdir.startswith(mp.rstrip("/") + "/") for mp, _, _ in mounts):
        # Inside a volume: create it there, after the mounts (as a runtime would).
        lines.append(f"mkdir -p {shlex.quote(workdir)}")
    elif not Path(workdir).exists():
        ctx.mountpoints.ensure(Path(workdir), is_file=False)
    lines.append(f"cd {shlex.quote(workdir)}")
    lines.append('exec "$@"')
    # unshare execs sh, sh execs the command: one PID throughout, so the
    # process-group signalling and exit code are those of the container command.
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        "\n".join(lines),
        "kubelet-sh",
        *argv,
    ]


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) becomes 128+N, as container runtimes report."""
    return 128 - returncode if returncode < 0 else returncode


class Container:
    """One container of a pod: its process and its reported status."""

    def __init__(self, ctx: RunnerContext, pod: Json, spec: Json) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.log_path = ctx.log_path(pod["metadata"]["namespace"], pod["metadata"]["name"], self.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.restart_at: float | None = None
        self.exit_code: int | None = None
        self.state: Json = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Json = {}
        self.settled = False  # True once the supervisor has acted on the latest exit
        self._started_at = ""

    def start(self, launch: Launch) -> None:
        self.proc = spawn(launch.argv, self.log_path, env=launch.env, cwd=launch.cwd, append=True)
        self._started_at = now_rfc3339()
        self.exit_code = None
        self.restart_at = None
        self.state = {"running": {"startedAt": self._started_at}}
        self.settled = False

    def start_failed(self, message: str) -> None:
        """The process could not be started: a runtime reports exit code 128, StartError."""
        now = now_rfc3339()
        self.exit_code = 128
        self.restart_at = None
        self.settled = False
        self.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": message[:1000],
                "startedAt": now,
                "finishedAt": now,
            }
        }

    def fail_to_start(self, reason: str, message: str) -> None:
        self.state = {"waiting": {"reason": reason, "message": message[:1000]}}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    def poll(self) -> int | None:
        """Record and return the exit code once the process has exited."""
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        rc = self.proc.poll()
        if rc is None:
            return None
        self.exit_code = exit_code_of(rc)
        self.state = {
            "terminated": {
                "exitCode": self.exit_code,
                "reason": "Completed" if self.exit_code == 0 else "Error",
                "startedAt": self._started_at,
                "finishedAt": now_rfc3339(),
                "containerID": f"local://{self.proc.pid}",
            }
        }
        return self.exit_code

    def schedule_restart(self) -> None:
        # Short crash-loop backoff (a real kubelet starts at 10 s): tests are short.
        delay = min(0.5 * 2**self.restart_count, 10.0)
        self.restart_at = time.monotonic() + delay
        self.last_state = self.state
        self.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.1f}s restarting failed container",
            }
        }
        self.restart_count += 1

    def status(self, image: str) -> Json:
        return {
            "name": self.name,
            "image": image,
            "imageID": f"local://{image}",
            "containerID": f"local://{self.proc.pid}" if self.proc is not None else "",
            "ready": "running" in self.state,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodRunner(threading.Thread):
    """Lifecycle of one pod bound to this node, in its own thread.

    Processes are spawned from this thread (PDEATHSIG is per thread), and the
    thread outlives them: it always kills what it started before returning.
    """

    def __init__(self, ctx: RunnerContext, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self._pod = pod
        self._lock = threading.Lock()
        self._deleting = threading.Event()
        self._shutdown = threading.Event()
        self._gone = False
        self.finished = threading.Event()
        self.pod_dir = ctx.pods_dir / f"{self.namespace}_{self.pod_name}_{self.uid[:8]}"
        self._init: list[Container] = [Container(ctx, pod, c) for c in pod["spec"].get("initContainers", [])]
        self._main: list[Container] = [Container(ctx, pod, c) for c in pod["spec"]["containers"]]
        self._start_time = now_rfc3339()
        self._phase = "Pending"
        self._reason: str | None = None

    # ---- signals from the kubelet's watch thread ------------------------

    @property
    def pod(self) -> Json:
        with self._lock:
            return self._pod

    def update(self, pod: Json) -> None:
        with self._lock:
            self._pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._deleting.set()

    def on_deleted(self) -> None:
        """The object is gone (e.g. force-deleted): kill now, report nothing."""
        self._gone = True
        self._deleting.set()

    def shutdown(self) -> None:
        """The kubelet is stopping: kill processes, leave the API objects alone."""
        self._shutdown.set()
        self._deleting.set()

    # ---- main flow -------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: runner failed", self.namespace, self.pod_name)
            self._kill_all()
            self._reason = "KubeletError"
            self._phase = "Failed"
            self._safe_status()
        finally:
            self._kill_all()
            shutil.rmtree(self.pod_dir / "volumes", ignore_errors=True)
            self.finished.set()
            if self._deleting.is_set():
                self._force_delete()

    def _run(self) -> None:
        self._safe_status()
        volumes = self._retry_setup(lambda: materialise(self.ctx.rest, self.pod, self.pod_dir / "volumes"))
        if volumes is None:
            return
        if not self._run_init_containers(volumes):
            return
        for container in self._main:
            self._start(container, volumes)
        self._phase = "Running"
        self._safe_status()
        self._supervise(volumes)

    def _retry_setup(self, step: Callable[[], T]) -> T | None:
        """Retry step (volumes, env) until it works or the pod is deleted."""
        while not self._deleting.is_set():
            try:
                return step()
            except (VolumeError, ConfigError, ApiError) as exc:
                log.info("pod %s/%s: setup not ready: %s", self.namespace, self.pod_name, exc)
                reason = "CreateContainerConfigError" if isinstance(exc, ConfigError) else "ContainerCreating"
                for c in self._main:
                    if not c.running:
                        c.fail_to_start(reason, str(exc))
                self._safe_status()
                self._deleting.wait(SETUP_RETRY_S)
        return None

    def _start(self, container: Container, volumes: Mapping[str, Path]) -> bool:
        scratch = self.pod_dir / "scratch" / container.name
        scratch.mkdir(parents=True, exist_ok=True)
        launch = self._retry_setup(lambda: build_launch(self.ctx, self.pod, container.spec, volumes, scratch))
        if launch is None:
            return False
        try:
            container.start(launch)
        except OSError as exc:  # e.g. command not found (rewrite mode execs it directly)
            container.start_failed(str(exc))
        return True

    def _run_init_containers(self, volumes: Mapping[str, Path]) -> bool:
        """Run init containers one by one; False when the pod must not go on."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self._init:
            while True:
                if not self._start(container, volumes):
                    return False
                self._safe_status()
                while container.poll() is None:
                    if self._deleting.wait(0.1):
                        return False
                if container.exit_code == 0:
                    break
                if policy == "Never":
                    self._phase = "Failed"
                    self._safe_status()
                    return False
                container.schedule_restart()
                self._safe_status()
                if self._deleting.wait(max(0.0, (container.restart_at or 0) - time.monotonic())):
                    return False
        return True

    def _supervise(self, volumes: Mapping[str, Path]) -> None:
        """Watch the main containers until they are all done or the pod is deleted."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        deadline = self._active_deadline()
        while True:
            if self._deleting.wait(0.1):
                self._terminate(self._grace())
                break
            if deadline is not None and time.monotonic() > deadline:
                self._reason = "DeadlineExceeded"
                self._terminate(self._grace())
                break
            if self._step_containers(policy, volumes):
                self._safe_status()
            if all(c.exit_code is not None and c.restart_at is None for c in self._main):
                break
        self._phase = "Succeeded" if all(c.exit_code == 0 for c in self._main) else "Failed"
        if self._reason == "DeadlineExceeded":
            self._phase = "Failed"
        self._safe_status()

    def _step_containers(self, policy: str, volumes: Mapping[str, Path]) -> bool:
        changed = False
        for c in self._main:
            if c.restart_at is not None:
                if time.monotonic() >= c.restart_at:
                    changed |= self._start(c, volumes)
                continue
            if c.settled or c.poll() is None:
                continue  # running, never started, or its exit already handled
            c.settled = True
            changed = True
            if policy == "Always" or (policy == "OnFailure" and c.exit_code != 0):
                c.schedule_restart()
        return changed

    def _active_deadline(self) -> float | None:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        return time.monotonic() + float(seconds) if seconds is not None else None

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        if self._gone or self._shutdown.is_set():
            return 0.0
        return min(float(grace), self.ctx.max_grace_s)

    def _terminate(self, grace_s: float) -> None:
        """SIGTERM every running container's group, wait up to grace_s, then SIGKILL."""
        running = [c for c in self._main + self._init if c.running and c.proc is not None]
        for c in running:
            assert c.proc is not None
            signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(
            c.proc is not None and c.proc.poll() is None for c in running
        ):
            time.sleep(0.05)
        self._kill_all()
        for c in self._main + self._init:
            c.restart_at = None
            if c.proc is not None:
                c.poll()

    def _kill_all(self) -> None:
        for c in self._main + self._init:
            if c.proc is not None:
                # The leader may have exited while its children hold the group.
                signal_group(c.proc, signal.SIGKILL)
                try:
                    c.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log.warning("pod %s/%s: %s did not die", self.namespace, self.pod_name, c.name)

    # ---- API writes --------------------------------------------------------

    def _status_body(self, current: Json) -> Json:
        status: Json = dict(current.get("status", {}))
        images = {
            c["name"]: c.get("image", "")
            for c in self.pod["spec"]["containers"] + self.pod["spec"].get("initContainers", [])
        }
        status.update(
            {
                "phase": self._phase,
                "hostIP": POD_IP,
                "hostIPs": [{"ip": POD_IP}],
                "startTime": status.get("startTime") or self._start_time,
                "containerStatuses": [c.status(images[c.name]) for c in self._main],
            }
        )
        if self._init:
            status["initContainerStatuses"] = [c.status(images[c.name]) for c in self._init]
        if self._phase != "Pending":
            status["podIP"] = POD_IP
            status["podIPs"] = [{"ip": POD_IP}]
        if self._reason:
            status["reason"] = self._reason
        status["conditions"] = self._conditions(status.get("conditions", []))
        return status

    def _conditions(self, existing: list[Json]) -> list[Json]:
        now = now_rfc3339()
        running = self._phase == "Running" and all("running" in c.state for c in self._main)
        initialised = self._phase != "Pending" or not self._init
        mine = {
            "PodReadyToStartContainers": True,
            "Initialized": initialised,
            "ContainersReady": running,
            "Ready": running,
        }
        out = [c for c in existing if c.get("type") not in mine]
        old = {c.get("type"): c for c in existing}
        for ctype, ok in mine.items():
            value = "True" if ok else "False"
            prev = old.get(ctype, {})
            cond: Json = {
                "type": ctype,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": prev.get("lastTransitionTime", now)
                if prev.get("status") == value
                else now,
            }
            if not ok and self._phase in ("Succeeded", "Failed"):
                cond["reason"] = "PodCompleted"
            out.append(cond)
        return out

    def _safe_status(self) -> None:
        if self._gone or self._shutdown.is_set():
            return
        try:
            self._write_status()
        except Exception as exc:
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.pod_name, exc)

    def _write_status(self) -> None:
        """Read-modify-write of /status (conflicts retried), keeping others' conditions."""
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
        for _ in range(STATUS_RETRIES):
            try:
                current = self.ctx.rest.get(path)
            except ApiError as exc:
                if exc.status == 404:
                    self._gone = True
                    return
                raise
            if current["metadata"]["uid"] != self.uid:
                self._gone = True
                return
            if current.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return  # terminal phases never change
            current["status"] = self._status_body(current)
            try:
                self.ctx.rest.put(path + "/status", current)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"status of {self.namespace}/{self.pod_name}: too many conflicts")

    def _force_delete(self) -> None:
        """Remove the object once its processes are gone, as a kubelet does (grace 0)."""
        if self._gone or self._shutdown.is_set():
            return
        force_delete(self.ctx.rest, self.namespace, self.pod_name, self.uid)


def force_delete(rest: Rest, namespace: str, name: str, uid: str) -> None:
    body: Json = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    try:
        rest.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", body)
    except ApiError as exc:
        if exc.status not in (404, 409):
            log.warning("delete of pod %s/%s failed: %s", namespace, name, exc)


def base_environment(repo_root: Path, inherit: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
    """Environment every container starts from: a few host variables, the project's
    venv first on PATH (so `kubetune` and `python` resolve to the project's), extras."""
    env = {k: os.environ[k] for k in inherit if k in os.environ}
    venv_bin = repo_root / ".venv" / "bin"
    env["PATH"] = os.pathsep.join([str(venv_bin), os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env.update(extra)
    return env
