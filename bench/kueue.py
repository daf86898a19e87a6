"""11. What Kueue adds: a trial Job's creation to its pod running, with and without Kueue.

The same study (fake trials of a few seconds, parallel 4) runs on the bench
cluster's real node twice per round, interleaved: its Jobs created as
before, and created suspended into a Kueue LocalQueue whose ClusterQueue has
quota for all four (so Kueue's admission, never a wait for quota, is what is
timed). Kueue is the real manager (tests/cluster/kueue.py), as a host process
against the bench control plane. Times come from an independent watcher
(JobClock), per trial.
"""

from __future__ import annotations

import json
import math
import time
import uuid

from kubernetes import client

from bench.cluster import JobClock, shared_cluster
from bench.common import Context, Section, interleave, log, machine, median, quantile, table
from bench.testbed import BenchCluster
from kubetune.controller.study import Study
from kubetune.spec import Budget, Spec
from tests.cluster.kueue import LOCAL_QUEUE, NAMESPACE_LABEL, Kueue, Queue, build_kueue

TRIALS = 24
PARALLEL = 4
SLEEP_S = 2.0
ROUNDS = 2
VARIANTS = ("direct", "kueue")
STAGES = {
    "job_to_pod": "Job created → pod created (Kueue's admission, then the Job controller)",
    "pod_to_running": "pod created → Running (scheduler, kubelet)",
    "job_to_running": "**Job created → pod Running**",
}


def run(ctx: Context) -> Section:
    cluster = shared_cluster(ctx)
    assert cluster.control_plane is not None, "the bench cluster's control plane runs Kueue"
    cp = cluster.control_plane
    ctx.once("kueue", lambda: ctx.stack.enter_context(Kueue(build_kueue(), cp, ctx.work / "kueue")))
    trials, sleep = (3, 0.2) if ctx.smoke else (TRIALS, SLEEP_S)
    runs = interleave(VARIANTS, 1 if ctx.smoke else ROUNDS, lambda v: study_run(cluster, v, trials, sleep))
    return _section(runs, trials, sleep)


def study_run(cluster: BenchCluster, variant: str, trials: int, sleep: float) -> dict[str, list[float]]:
    """One study; each trial's stages, in seconds."""
    name = f"kueue-{uuid.uuid4().hex[:8]}"
    spec = Spec(name=name, budget=Budget(max_trials=trials, parallel=PARALLEL, max_failed=2))
    namespace = cluster.namespace()
    queue = None
    if variant == "kueue":
        api = cluster.api()
        client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": {NAMESPACE_LABEL: "true"}}})
        Queue(api, namespace, gpus=max(cluster.gpus, 1) * PARALLEL).create()
        queue = LOCAL_QUEUE
    launcher = cluster.launcher(namespace, json.dumps({"default": {"sleep": sleep}}), queue=queue)
    try:
        with JobClock(cluster.api(), namespace) as clock:
            t0 = time.time()
            outcome = Study(spec, cluster.store(name), launcher).run()
            log(f"{variant}: {time.time() - t0:.1f} s, {outcome.summary.succeeded} succeeded")
    finally:
        launcher.close()
        if queue is not None:
            Queue(cluster.api(), namespace, gpus=0).delete()
    at = clock.at
    out: dict[str, list[float]] = {key: [] for key in STAGES}
    for i in range(trials):
        job, pod, running = (at[m].get(i, float("nan")) for m in ("job_added", "pod_added", "pod_running"))
        out["job_to_pod"].append(pod - job)
        out["pod_to_running"].append(running - pod)
        out["job_to_running"].append(running - job)
    return out


def _section(runs: dict[str, list[dict[str, list[float]]]], trials: int, sleep: float) -> Section:
    s = Section("kueue", "11. What Kueue adds before a trial runs")
    rounds = max(len(r) for r in runs.values())
    s.add(
        f"{machine().line()}. {trials} fake trials of {sleep:g} s at parallel {PARALLEL} on the real node, "
        f"launched by a `Study` with `KubernetesLauncher` in the bench process; {rounds} rounds, the two "
        "variants interleaved: Jobs created as without a queue (`direct`), and created suspended into a "
        f"LocalQueue of Kueue v0.17.0 (the real manager, a host process) whose ClusterQueue has quota for "
        f"all {PARALLEL}, so only its admission is timed, never a wait for quota. Seconds per trial, over "
        "every trial of every round: median (90th percentile)."
    )
    # Every trial of every round; a mark the watcher missed (nan) is left out.
    pooled = {
        v: {k: [x for r in rs for x in r[k] if not math.isnan(x)] for k in STAGES} for v, rs in runs.items()
    }
    rows = [
        [name, *[f"{median(pooled[v][k]):.3f} ({quantile(pooled[v][k], 0.9):.3f})" for v in runs]]
        for k, name in STAGES.items()
    ]
    s.add(table(["stage", *runs], rows))
    kueue, direct = pooled["kueue"]["job_to_pod"], pooled["direct"]["job_to_pod"]
    s.add(
        f"Kueue's admission adds {median(kueue) - median(direct):.2f} s at the median "
        f"({quantile(kueue, 0.9) - quantile(direct, 0.9):.2f} s at the 90th "
        "percentile) before a trial's pod exists: its webhook at creation, then its scheduler admitting the "
        "Workload and unsuspending the Job. From the pod on, nothing differs: pod created → Running is the "
        "node's, and its difference between the variants is this machine's noise."
    )
    s.data = {"runs": runs}
    return s
