"""3. Parallel scaling: 48 fixed-length synthetic trials at parallel 1, 4 and 8 on the test cluster.

Each trial is the fake trial lasting 3 s from its process start (as a real
trial holds its GPU for its own run time, however slowly the 2-core bench
machine starts eight containers at once), run in containers on the bench's
real node (kubelet, containerd; 8 advertised GPUs, one per trial) through the
real Job controller and scheduler, launched by a real Study + KubernetesLauncher in this process.
Efficiency is the ideal wall time (48 x 3 s / parallel) over the measured
one. Where the rest goes is read off an independent watcher (JobClock) and
the Study's own calls (Probe), per trial, as medians.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cluster import JobClock, Probe, instrumented, shared_cluster
from bench.common import Context, Section, interleave, log, machine, median, table
from bench.testbed import BenchCluster
from kubetune.controller import publisher
from kubetune.controller.study import Study
from kubetune.spec import Budget, Spec

PARALLEL = (1, 4, 8)
TRIALS = 48
SLEEP_S = 3.0
ROUNDS = 2
TARGET = 0.85
# Per-trial stages, from the trial's Job being created to the next Job taking its slot.
STAGES = {
    "job_to_pod": "Job created → pod created (Job controller)",
    "schedule": "pod created → bound (scheduler)",
    "start": "bound → Running (kubelet starts the container)",
    "trial": "Running → Succeeded, minus the 3 s trial (its result write, exit)",
    "job_done": "pod Succeeded → Job Complete (Job controller)",
    "detect": "pod Succeeded → our wait() returns",
    "refill": "wait() returns → next Job created (views, suggest, create)",
    "suggest": "of which suggest()",
}


NO_PLOTS = "8, no plot redraws"


def run(ctx: Context) -> Section:
    parallel = (1, 2) if ctx.smoke else PARALLEL
    trials, sleep = (3, 0.2) if ctx.smoke else (TRIALS, SLEEP_S)
    cluster = shared_cluster(ctx)
    # The extra variant shows what the loop's plot redraws cost at parallel 8.
    variants = [str(p) for p in parallel] + ([] if ctx.smoke else [NO_PLOTS])

    def one(variant: str) -> dict[str, Any]:
        work = ctx.work / "scaling" / uuid.uuid4().hex[:8]
        if variant != NO_PLOTS:
            return study_run(cluster, work, int(variant), trials, sleep)
        with _no_plot_redraws():
            return study_run(cluster, work, 8, trials, sleep)

    # Parallel 1 takes minutes a run, and its 48 back-to-back trials already
    # average out per-trial noise: it runs once; the rest are interleaved.
    first = interleave(variants[:1], 1, one)
    runs = {**first, **interleave(variants[1:], 1 if ctx.smoke else ROUNDS, one)}
    return _section(runs, trials, sleep)


@contextlib.contextmanager
def _no_plot_redraws() -> Iterator[None]:
    saved = publisher.PLOTS_EVERY_S
    publisher.PLOTS_EVERY_S = math.inf  # only the final report draws them
    try:
        yield
    finally:
        publisher.PLOTS_EVERY_S = saved


def study_run(cluster: BenchCluster, work: Path, parallel: int, trials: int, sleep: float) -> dict[str, Any]:
    """One whole study; its wall time and the median of each per-trial stage."""
    spec = Spec(name=f"scale-{work.name}", budget=Budget(max_trials=trials, parallel=parallel, max_failed=2))
    store = cluster.store(f"scale-{parallel}")
    namespace = cluster.namespace()
    launcher = cluster.launcher(namespace, json.dumps({"default": {"sleep": sleep}}))
    study = Study(spec, store, launcher)
    try:
        with JobClock(cluster.api(), namespace) as clock, instrumented(study) as probe:
            t0 = time.time()
            study.run()
            wall = time.time() - t0
    finally:
        launcher.close()
    stages = _stages(clock, probe, trials, parallel, sleep)
    log(f"parallel {parallel}: {wall:.1f} s (ideal {trials * sleep / parallel:.1f} s)")
    return {
        "wall_s": wall,
        "stages": {k: median(v) for k, v in stages.items()},
        "publish_s": sum(probe.publish_s),
        # After the last trial's exit: its views, the final plots and report.html, conclude().
        "tail_s": t0 + wall - max(probe.exit_seen.values()),
        "suggest_s": sum(b - a for a, b in probe.suggest.values()),
        "idle_s": probe.idle_s,
        "raw": {
            "t0": t0,
            "clock": clock.at,
            "exit_seen": probe.exit_seen,
            "launch_done": probe.launch_done,
            "suggest": probe.suggest,
        },
    }


def _stages(
    clock: JobClock, probe: Probe, trials: int, parallel: int, sleep: float
) -> dict[str, list[float]]:
    at = clock.at
    out: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in range(trials):
        marks = [at[m].get(i, float("nan")) for m in JobClock.MARKS]
        job_added, pod_added, scheduled, running, pod_done, job_done = marks
        out["job_to_pod"].append(pod_added - job_added)
        out["schedule"].append(scheduled - pod_added)
        out["start"].append(running - scheduled)
        out["trial"].append(pod_done - running - sleep)
        out["job_done"].append(job_done - pod_done)
        out["detect"].append(probe.exit_seen.get(i, float("nan")) - pod_done)
    # The k-th exit the Study saw freed the slot that trial parallel+k then took.
    exits = sorted(probe.exit_seen.items(), key=lambda kv: kv[1])
    for k, (_, seen) in enumerate(exits):
        nxt = parallel + k
        if nxt in probe.launch_done:
            out["refill"].append(probe.launch_done[nxt] - seen)
            s0, s1 = probe.suggest[nxt]
            out["suggest"].append(s1 - s0)
    return out


def _section(runs: dict[str, list[dict[str, Any]]], trials: int, sleep: float) -> Section:
    s = Section("scaling", "3. Parallel scaling")
    rounds = max(len(r) for r in runs.values())
    s.add(
        f"{machine().line()}. {trials} fake trials of {sleep:g} s each (the fake trial lasts that long from "
        "its process start: before 2026-11-27 it slept that long after a 0.2-1 s Python start-up), one "
        "nvidia.com/gpu each on a real node (kubelet, containerd, runc) with 8, containers of the fake trial "
        "image writing to fake-gcs-server, through the test control plane's Job "
        "controller and scheduler; the controller is a `Study` with `KubernetesLauncher` in the bench "
        f"process. Parallel 1 once; the others {rounds} rounds, interleaved (4, 8, 8, 4, 8, 8 ...); medians."
    )
    rows = []
    for v, rs in runs.items():
        wall = median([r["wall_s"] for r in rs])
        ideal = trials * sleep / _parallel(v)
        sums = [median([r[k] for r in rs]) for k in ("tail_s", "suggest_s", "publish_s")]
        rows.append([v, ideal, wall, f"{ideal / wall:.0%}", _share(rs, "idle_s"), *sums])
    header = ["parallel", "ideal s", "wall s", "efficiency", "controller idle",
              "of which after the last trial s", "Σ suggest() s", "Σ views s"]  # fmt: skip
    s.add(table(header, rows))
    header = ["per-trial stage (median s)", *[f"parallel {v}" for v in runs]]
    srows = [
        [name, *[median([r["stages"][key] for r in rs]) for rs in runs.values()]]
        for key, name in STAGES.items()
    ]
    s.add(table(header, srows))
    eff = {v: trials * sleep / _parallel(v) / median([r["wall_s"] for r in rs]) for v, rs in runs.items()}
    top = str(max(_parallel(v) for v in runs))
    met = "met" if eff[top] >= TARGET else "missed"
    s.add(f"Target ≥ {TARGET:.0%} efficiency at parallel {top}: **{met}** ({eff[top]:.0%}).")
    s.add(_reading(runs, top, sleep))
    s.data = {"runs": runs}
    return s


def _reading(runs: dict[str, list[dict[str, Any]]], top: str, sleep: float) -> str:
    """Where each trial's slot went beyond its own run, at the top parallel: the node's or ours."""
    stage = {k: median([r["stages"][k] for r in runs[top]]) for k in STAGES}
    node = stage["start"] + stage["trial"]
    ours = stage["detect"] + stage["refill"]
    minutes = 10 * 60
    return (
        f"Reading: beyond its {sleep:g} s, each trial's GPU slot at parallel {top} held {node:.1f} s of the "
        f"node's (container start {stage['start']:.2f} s; after the trial, its exit noticed on the kubelet's "
        f"relist and reported, {stage['trial']:.2f} s) and {ours:.2f} s of the controller's (exit seen, next "
        f"Job created). On a real kubelet those seconds, not the controller, set the efficiency of trials "
        f"this short; a trial of {minutes // 60} minutes would lose the same seconds, "
        f"{minutes / (minutes + node + ours):.0%} efficiency."
    )


def _parallel(variant: str) -> int:
    return int(variant.split(",")[0])


def _share(rs: list[dict[str, Any]], key: str) -> str:
    return f"{median([r[key] / r['wall_s'] for r in rs]):.0%}"
