"""7. The whole controller at scale: a 1,000-trial study at parallel 100 on simulated GPU nodes.

The test control plane (tests/cluster: etcd, kube-apiserver, the Job
controller and the scheduler, on 127.0.0.1) and kwok (built by
tests/cluster/build-kwok.sh), which plays NODES nodes of GPUS nvidia.com/gpu
each and the trial pods bound to them (bench/kwok.yaml: Running at once). The
controller under test is ``kubetune run --launcher kubernetes`` in a process
of its own, with a client certificate of its own. This process stands in for
the trials: once a trial's pod runs it waits the trial's duration, writes the
trial's result record into the store (what tests/fake_trial.py writes) and
annotates the pod, upon which kwok completes it.

Measured: the controller's CPU time and peak RSS (its own getrusage and VmHWM,
written as it exits; /proc samples along the study); API requests by client
from the apiserver's audit log (each request with its user), all clients'
from apiserver_request_total; the time from a result landing (its file's
mtime) to the Job that takes over its GPU (ADDED, as a watcher sees it).
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import json
import math
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bench.cluster import JobClock
from bench.common import PYTHON, REPO, Context, Section, log, machine, quantile, table
from kubetune.contract import parse_trial_args, result_object
from kubetune.kinds import CNN
from kubetune.kubernetes.job import TRIAL_LABEL
from kubetune.spec import Budget, Spec
from kubetune.store import open_store
from tests.cluster.controlplane import ControlPlane, write_kubeconfig
from tests.cluster.proc import spawn, stop_group, tail
from tests.fake_trial import objective, succeeded
from tests.polling import wait_for

GPUS = 8
STUDY = "kwok"
NAMESPACE = "kwok-bench"
EXITED = "kubetune.dev/bench-exited"  # bench/kwok.yaml's pod-exited stage waits for it
STAGES = Path(__file__).with_name("kwok.yaml")
CONTROLLER_USER = "kubetune-controller"
KWOK_USER = "kwok"
CLIENTS = {
    CONTROLLER_USER: "the controller (kubetune run)",
    KWOK_USER: "kwok (nodes, pod status)",
    "system:kube-controller-manager": "kube-controller-manager (Job controller)",
    "system:kube-scheduler": "kube-scheduler",
    "kubetune-admin": "this bench (watches, result annotations)",
}
# Metadata of every request, once, when it completes (a watch: when it ends).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}
# Runs `kubetune run` (the console script's own main) and, as it exits, writes
# its own CPU time and peak RSS: VmHWM since exec, not ru_maxrss, which starts
# from the forking bench process's RSS.
_CONTROLLER = (
    "import json, resource, sys\n"
    "from kubetune.cli import main\n"
    "code = main(sys.argv[2:])\n"
    "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
    "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump({'exit': code, 'cpu_s': ru.ru_utime + ru.ru_stime, 'peak_rss_mb': hwm / 1024}, f)\n"
    "sys.exit(code)\n"
)
SAMPLE_S = 2.0


@dataclass(frozen=True)
class Scale:
    trials: int
    parallel: int
    nodes: int
    trial_s: tuple[float, float]  # each trial lasts a uniform draw from this range, seeded by its index


FULL = Scale(trials=1000, parallel=100, nodes=13, trial_s=(30.0, 90.0))
SMOKE = Scale(trials=30, parallel=10, nodes=2, trial_s=(1.0, 2.0))


def run(ctx: Context) -> Section:
    scale = SMOKE if ctx.smoke else FULL
    work = ctx.work / "kwok"
    with simulated_cluster(work, scale.nodes) as cluster:
        measured = measure(cluster, work, scale)
    return _section(scale, measured)


# --- the cluster: control plane, kwok, fake GPU nodes ---------------------------------


@dataclass(frozen=True)
class SimCluster:
    cp: ControlPlane
    audit_log: Path
    controller_kubeconfig: Path


def kwok_assets() -> Path:
    """The binaries' folder, kwok in it (build-kwok.sh is idempotent and prints it last)."""
    out = subprocess.run(
        ["bash", str(REPO / "tests" / "cluster" / "build-kwok.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=3 * 3600,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def simulated_cluster(work: Path, nodes: int) -> Iterator[SimCluster]:
    assets = kwok_assets()
    work.mkdir(parents=True, exist_ok=True)
    policy, audit_log = work / "audit-policy.yaml", work / "audit.log"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    audit = (f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}", "--audit-log-maxsize=0")
    with ControlPlane(assets=assets, work_dir=work / "controlplane", extra_apiserver_args=audit) as cp:
        kwok = spawn(
            [str(assets / "kwok"), f"--kubeconfig={_user_kubeconfig(cp, KWOK_USER)}", f"--config={STAGES}"],
            work / "kwok.log",
        )
        try:
            _add_nodes(cp, nodes, kwok, work / "kwok.log")
            yield SimCluster(cp, audit_log, _user_kubeconfig(cp, CONTROLLER_USER))
        finally:
            stop_group(kwok, 10.0)


def _user_kubeconfig(cp: ControlPlane, user: str) -> Path:
    """A kubeconfig with a client certificate of its own: the audit log tells its requests apart."""
    assert cp.pki is not None
    cert, key = cp.pki.client_cert(user, user, "system:masters")
    return write_kubeconfig(cp.work_dir / f"{user}.kubeconfig", cp.server, cp.ca_file, cert, key, user)


def _add_nodes(cp: ControlPlane, count: int, kwok: subprocess.Popen[bytes], kwok_log: Path) -> None:
    core = client.CoreV1Api(cp.api_client)
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "1000", "nvidia.com/gpu": str(GPUS)}
    for i in range(count):
        name = f"kwok-gpu-{i}"
        node: Any = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        core.create_node(node)

    def ready() -> bool:
        if kwok.poll() is not None:
            raise RuntimeError(f"kwok exited with {kwok.returncode}\n{tail(kwok_log)}")
        nodes: Any = core.list_node(_preload_content=False)
        conditions = [c for n in json.loads(nodes.data)["items"] for c in n["status"].get("conditions") or []]
        ready = [c["status"] for c in conditions if c["type"] == "Ready"]
        return len(ready) == count and all(status == "True" for status in ready)

    wait_for(f"{count} kwok nodes Ready", ready, 60, on_timeout=lambda: tail(kwok_log))
    # Admission gives a new node the not-ready taint; the node lifecycle controller,
    # which the test control plane does not run, would lift it once the node is Ready.
    untainted: Any = {"spec": {"taints": []}}
    for i in range(count):
        core.patch_node(f"kwok-gpu-{i}", untainted)


# --- the trials: results written as their pods run ---------------------------------------


class Trials(JobClock):
    """The JobClock's watch of trial Jobs and pods, which also plays the trials.

    A pod seen Running for the first time is due to finish after its trial's
    duration; then its result record is written and the pod annotated EXITED.
    """

    def __init__(self, api: client.ApiClient, namespace: str, trial_s: tuple[float, float]) -> None:
        super().__init__(api, namespace)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.trial_s = trial_s
        self.written: dict[int, float] = {}  # index -> when its result was written (time.time())
        self.errors: list[str] = []
        self._due: list[tuple[float, int, str, list[str]]] = []  # (due at, index, pod, command)
        self._seen: set[int] = set()
        self._wake = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._finish_due, daemon=True, name="trials")

    def __enter__(self) -> Trials:
        super().__enter__()
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._worker.join(30)
        super().__exit__(*exc)

    def _note(self, kind: str, obj: Any, now: float) -> None:
        super()._note(kind, obj, now)
        if not isinstance(obj, client.V1Pod) or obj.status is None or obj.status.phase != "Running":
            return
        pod: Any = obj
        index = int(pod.metadata.labels[TRIAL_LABEL])
        if index in self._seen:
            return
        self._seen.add(index)
        due = now + random.Random(index).uniform(*self.trial_s)
        entry: tuple[float, int, str, list[str]] = (
            due,
            index,
            pod.metadata.name,
            pod.spec.containers[0].command,
        )
        with self._wake:
            heapq.heappush(self._due, entry)
            self._wake.notify()

    def _finish_due(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._due or self._due[0][0] > time.time()):
                    self._wake.wait(self._due[0][0] - time.time() if self._due else None)
                if self._stopped:
                    return
                _, index, pod, command = heapq.heappop(self._due)
            try:
                self._finish(index, pod, command)
            except Exception as exc:  # reported at the end: one lost trial must not hang the bench
                self.errors.append(f"trial {index}: {exc}")

    def _finish(self, index: int, pod: str, command: list[str]) -> None:
        """What the fake trial does as it ends (its record, from its own argv), then the pod's exit."""
        req = parse_trial_args(command[2:], CNN)  # after "kubetune trial"
        result = succeeded(index, req.params, req.objective, objective(req.params), wall_time_s=0.0)
        open_store(req.store).create(result_object(index), result.to_json())
        self.written[index] = time.time()
        self.core.patch_namespaced_pod(pod, self.namespace, {"metadata": {"annotations": {EXITED: "0"}}})


# --- the controller, and what it cost --------------------------------------------------------


@dataclass
class Sampler:
    """The controller's CPU seconds and RSS from /proc, with the results written so far."""

    pid: int
    trials: Trials
    rows: list[tuple[float, float, float, int]] = field(default_factory=list)  # (t, cpu s, rss MB, done)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True, name="sampler").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(SAMPLE_S):
            # A process gone between two samples ends the sampling.
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{self.pid}/status").read_text().splitlines()
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
                cpu = (int(stat[11]) + int(stat[12])) / tick  # utime, stime: fields 14 and 15
                self.rows.append((time.time(), cpu, rss, len(self.trials.written)))


def measure(cluster: SimCluster, work: Path, scale: Scale) -> dict[str, Any]:
    cp = cluster.cp
    namespace: Any = {"metadata": {"name": NAMESPACE}}
    client.CoreV1Api(cp.api_client).create_namespace(namespace)
    store = work / "store"
    spec_file, settings_file, stats_file = (
        work / f for f in ("study.yaml", "settings.yaml", "controller.json")
    )
    budget = Budget(max_trials=scale.trials, parallel=scale.parallel)
    spec_file.write_text(Spec(name=STUDY, budget=budget).to_yaml())
    settings_file.write_text(yaml.safe_dump(_job_settings()))
    argv = ["run", str(spec_file), "--store", str(store), "--launcher", "kubernetes",
            "--job-settings", str(settings_file)]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(cluster.controller_kubeconfig), "KUBETUNE_NAMESPACE": NAMESPACE,
           "KUBETUNE_LOG_FORMAT": "json"}  # fmt: skip
    env.pop("KUBERNETES_SERVICE_HOST", None)
    before = _request_total(cp.api_client)
    log(f"kwok: {scale.trials} trials at parallel {scale.parallel} on {scale.nodes} nodes x {GPUS} GPUs")
    with Trials(cp.new_api_client(), NAMESPACE, scale.trial_s) as trials:
        t0 = time.time()
        argv = [PYTHON, "-c", _CONTROLLER, str(stats_file), *argv]
        controller = spawn(argv, work / "controller.log", env=env)
        try:
            with Sampler(controller.pid, trials) as sampler:
                code = controller.wait(timeout=4 * 3600)
        finally:
            stop_group(controller, 30.0)  # only if it is still running: the bench failed
        wall = time.time() - t0
    if code != 0 or trials.errors:
        raise RuntimeError(f"controller exited {code}; {trials.errors[:3]}\n{tail(work / 'controller.log')}")
    # The controller's watches are logged as they end, when it has exited: a moment later.
    time.sleep(1.0)
    after, end = _request_total(cp.api_client), time.time()
    landed = {i: (store / result_object(i)).stat().st_mtime for i in trials.written}
    return {
        "wall_s": wall,
        "controller": json.loads(stats_file.read_text()),
        "samples": sampler.rows,
        "landed": landed,
        "marks": trials.at,
        "requests": audit_counts(cluster.audit_log, t0, end),
        "request_total": after - before,
    }


def _job_settings() -> dict[str, Any]:
    return {
        "image": "kubetune-trial:kwok",  # never pulled: kwok runs no containers
        "gpus": 1,
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "pendingTimeoutSeconds": 120,  # a trial that cannot be scheduled fails the run soon
    }


def _request_total(api: client.ApiClient) -> float:
    """apiserver_request_total summed over every label: all clients' requests so far."""
    resp: Any = api.call_api("GET", f"{api.configuration.host}/metrics")
    lines = resp.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("apiserver_request_total{"))


def audit_counts(path: Path, start: float, end: float) -> dict[str, dict[str, int]]:
    """Requests completed within [start, end], by user, and by verb and resource within a user."""
    from datetime import datetime

    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            at = datetime.fromisoformat(event["stageTimestamp"]).timestamp()
            if not start <= at <= end:
                continue
            ref = event.get("objectRef") or {}
            what = "/".join(filter(None, [ref.get("resource"), ref.get("subresource")])) or event["verb"]
            counts[event["user"]["username"]][f"{event['verb']} {what}"] += 1
    return {user: dict(c) for user, c in counts.items()}


# --- the report ---------------------------------------------------------------------------------


def replacement_gaps(landed: dict[int, float], job_added: dict[int, float], parallel: int) -> list[float]:
    """Seconds from each result to the Job that takes over its GPU.

    The first ``parallel`` trials start at once; after that each new Job
    follows one result: the k-th result to land (by time) pairs with the k-th
    Job after the first wave. The last ``parallel`` results have no successor.
    """
    results = sorted(landed.values())
    later = sorted(t for i, t in job_added.items() if i >= parallel)
    return [job - result for result, job in zip(results, later, strict=False)]


def _section(scale: Scale, m: dict[str, Any]) -> Section:
    s = Section("kwok", "7. The controller at scale: simulated GPU nodes (kwok)")
    s.add(
        f"{machine().line()}. The test control plane (etcd, kube-apiserver, Job controller, scheduler v1.36) "
        f"and kwok v0.8.0 playing {scale.nodes} nodes of {GPUS} nvidia.com/gpu (bench/kwok.yaml: a bound pod "
        "runs at once, and succeeds once its result is written), all on loopback. The controller is "
        f"`kubetune run --launcher kubernetes`, a process of its own: {scale.trials} trials at parallel "
        f"{scale.parallel}, the notebook's 3-d space, the default optimizer. Each trial lasts "
        f"{scale.trial_s[0]:g}-{scale.trial_s[1]:g} s (uniform, seeded by its index) from its pod Running; "
        "then this bench writes its result record (the fake trial's, objective `tests.fake_trial.objective`) "
        "and annotates the pod, and kwok completes it. Controller CPU and peak RSS: its own getrusage and "
        f"VmHWM as it exits; the quarters' CPU and RSS from /proc samples every {SAMPLE_S:g} s. A result's "
        f"next Job is the one that takes its GPU: after the first {scale.parallel}, the k-th Job (ADDED, "
        "as a watcher sees it) follows the k-th result to land (its file's mtime). API requests: the "
        "apiserver's audit log (every request once, as it completes; a watch when it ends), by client "
        "certificate, over the controller's lifetime; and apiserver_request_total, all clients. One run. "
        "Rerun: `nice -n 5 .venv/bin/python -m bench kwok` (kwok built once by tests/cluster/build-kwok.sh)."
    )
    s.add(_summary_table(scale, m), _scale_table(scale, m), _requests_table(scale, m))
    s.data = {"scale": vars(scale), **m}
    return s


def _summary_table(scale: Scale, m: dict[str, Any]) -> str:
    marks, landed, ctl = m["marks"], m["landed"], m["controller"]
    gaps = replacement_gaps(landed, marks["job_added"], scale.parallel)
    mean_trial = sum(scale.trial_s) / 2
    ideal = -(-scale.trials // scale.parallel) * mean_trial
    running = marks["pod_running"]
    start = [running[i] - t for i, t in marks["job_added"].items() if i in running]
    exit_s = [marks["pod_done"][i] - t for i, t in landed.items() if i in marks["pod_done"]]
    busy = sum(t - running[i] for i, t in landed.items() if i in running)
    rows = [
        ["wall s (ideal: trials / parallel x mean trial)", f"{m['wall_s']:.0f} ({ideal:.0f})"],
        ["trials running on average (their time / wall)", f"{busy / m['wall_s']:.1f} of {scale.parallel}"],
        ["controller CPU s (user + system), whole run", f"{ctl['cpu_s']:.0f}"],
        ["controller CPU s per trial", f"{ctl['cpu_s'] / scale.trials:.2f}"],
        ["controller peak RSS MB (VmHWM)", f"{ctl['peak_rss_mb']:.0f}"],
        ["result → the Job taking its GPU (ADDED), median / p90 / max s", _spread(gaps)],
        ["Job ADDED → pod Running (Job controller, scheduler, kwok), median / p90 s", _spread(start, False)],
        ["result → pod Succeeded (annotation, kwok), median / p90 s", _spread(exit_s, False)],
    ]
    return table(["", "value"], rows)


def _spread(values: list[float], top: bool = True) -> str:
    parts = [quantile(values, 0.5), quantile(values, 0.9)] + ([max(values, default=math.nan)] if top else [])
    return " / ".join(f"{v:.3g}" for v in parts) + f" ({len(values)})"


def _scale_table(scale: Scale, m: dict[str, Any]) -> str:
    """Cost and latency by quarter of the study: how they grow with the trials finished."""
    samples, landed = m["samples"], m["landed"]
    gaps = replacement_gaps(landed, m["marks"]["job_added"], scale.parallel)
    order = sorted(landed.values())
    quarter = max(1, scale.trials // 4)
    rows = []
    for lo in range(0, scale.trials, quarter):
        hi = min(lo + quarter, scale.trials)
        window = [r for r in samples if lo <= r[3] <= hi]
        cpu = _per_result(window)
        in_quarter = gaps[lo:hi]
        when = f"{order[lo] - order[0]:.0f}-{order[hi - 1] - order[0]:.0f}" if hi <= len(order) else "n/a"
        rows.append([f"{lo + 1}-{hi}", when, cpu, max((r[2] for r in window), default=math.nan),
                     quantile(in_quarter, 0.5), quantile(in_quarter, 0.9)])  # fmt: skip
    header = ["results", "they land at s (from the first)", "controller CPU s per result",
              "RSS MB (max sampled)", "result → next Job, median s", "p90 s"]  # fmt: skip
    return table(header, rows)


def _per_result(window: list[tuple[float, float, float, int]]) -> float:
    """CPU seconds per result written between the first and the last sample."""
    if len(window) < 2 or window[-1][3] == window[0][3]:
        return math.nan
    return (window[-1][1] - window[0][1]) / (window[-1][3] - window[0][3])


def _requests_table(scale: Scale, m: dict[str, Any]) -> str:
    requests: dict[str, dict[str, int]] = m["requests"]
    rows = [[label, sum(requests.get(user, {}).values()) / scale.trials] for user, label in CLIENTS.items()]
    rows.append(["all clients (apiserver_request_total)", m["request_total"] / scale.trials])
    ours = collections.Counter(requests.get(CONTROLLER_USER, {})).most_common()
    detail = ", ".join(f"{what} {n / scale.trials:.3g}" for what, n in ours)
    return table(["API requests per trial, from the audit log", "requests"], rows) + (
        f"\n\nThe controller's, by verb and resource (per trial): {detail}."
    )
