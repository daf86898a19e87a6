"""5. Memory: the controller's peak RSS over a 200-trial study, and a real trial's.

Controller: a process of its own (``python -m bench.memory STORE TRIALS
PARALLEL``) runs a ``Study`` with the real ``LocalLauncher``, whose trials are
the fake trial (tests/fake_trial.py's shim, sleep 0) as subprocesses, at
parallel 4; it reports its own peak RSS (VmHWM from /proc/self/status: the
trials are not counted), and its RSS after imports and at the end.

Trial: the real ``kubetune trial`` on all 54,000 training images for 1 epoch,
with an empty data dir fetching the dataset from a local store, as a Job
runs it; its peak RSS is ru_maxrss as a small parent process sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, Context, Section, interleave, machine, median, table
from bench.throughput import KUBETUNE_BIN, prepared_data_dir, store_with_dataset
from kubetune.contract import TrialRequest, trial_command
from kubetune.kinds import CnnSettings

STUDY_TRIALS = 200
PARALLEL = 4
ROUNDS = 2


def run(ctx: Context) -> Section:
    trials = 6 if ctx.smoke else STUDY_TRIALS
    subset = 512 if ctx.smoke else None
    rounds = 1 if ctx.smoke else ROUNDS
    data_dir = prepared_data_dir(ctx)
    store = store_with_dataset(ctx, data_dir)
    # The store is shared with the throughput benchmark: indices of their own.
    counter = iter(range(10**6, 2 * 10**6))
    (ctx.work / "memory").mkdir(parents=True, exist_ok=True)

    def one(what: str) -> dict[str, Any]:
        if what == "controller":
            return controller_rss(ctx.work / "memory" / f"study-{next(counter)}", trials)
        return trial_rss(store, next(counter), subset, ctx.work / "memory")

    runs = interleave(["controller", "trial"], rounds, one, concurrent=ctx.smoke)
    return _section(runs, trials)


def controller_rss(work: Path, trials: int) -> dict[str, Any]:
    argv = [PYTHON, "-m", "bench.memory", str(work), str(trials), str(PARALLEL)]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"controller study exited {out.returncode}: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# Runs a command and prints its peak RSS in KiB. A process's ru_maxrss starts
# from its parent's RSS at fork (Linux keeps the high-water mark across exec),
# and the bench process can be gigabytes: this small process is the parent.
_PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def trial_rss(store: Path, index: int, subset: int | None, work: Path) -> dict[str, Any]:
    small = subset is not None  # smoke: validate and test on a few hundred images too
    settings = CnnSettings(epochs=1, train_subset=subset, validation_split=0.01 if small else 0.1,
                             test_subset=256 if small else None)  # fmt: skip
    req = TrialRequest(str(store), "memory", index, {}, settings, "val_accuracy")
    argv = [PYTHON, "-c", _PEAK_OF_CHILD, KUBETUNE_BIN, *trial_command(req)[1:]]
    with tempfile.TemporaryDirectory(dir=work, prefix="data-") as fresh:
        env = {**os.environ, "KUBETUNE_DATA_DIR": fresh, "KUBETUNE_LOG_FORMAT": "json"}
        t0 = time.time()
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kubetune trial failed: {out.stderr[-2000:]}")
    return {"peak_rss_mb": int(out.stdout.split()[-1]) / 1024, "wall_s": time.time() - t0}


# --- the controller process -------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def _controller(work: Path, trials: int, parallel: int) -> dict[str, Any]:
    from kubetune.controller.study import Study
    from kubetune.launcher import LocalLauncher
    from kubetune.spec import Budget, Spec
    from kubetune.store import open_store
    from tests.fake_trial import ENV, shim_dir

    after_imports = _status_mb("VmRSS")
    spec = Spec(name="memory", budget=Budget(max_trials=trials, parallel=parallel, max_failed=2))
    launcher = LocalLauncher(
        work / "logs",
        env={ENV: '{"default": {"sleep": 0}}'},
        executable=str(shim_dir(work / "shim") / "kubetune"),
    )
    t0 = time.time()
    try:
        outcome = Study(spec, open_store(str(work / "store")), launcher, poll_s=0.2).run()
    finally:
        launcher.close()
    return {
        "after_imports_mb": after_imports,
        "end_mb": _status_mb("VmRSS"),
        # VmHWM, not ru_maxrss: this process's own peak since exec (see _PEAK_OF_CHILD).
        "peak_rss_mb": _status_mb("VmHWM"),
        "wall_s": time.time() - t0,
        "succeeded": outcome.summary.succeeded,
    }


def _section(runs: dict[str, list[dict[str, Any]]], trials: int) -> Section:
    s = Section("memory", "5. Memory")
    c, t = runs["controller"], runs["trial"]
    s.add(
        f"{machine().line()}. Controller: a `Study` + `LocalLauncher` in a process of its own, {trials} fake "
        f"trials (sleep 0) at parallel {PARALLEL}, its own peak RSS (VmHWM; trials not counted). Trial: the "
        "real `kubetune trial`, 54,000 training images, 1 epoch, empty data dir fetching from a local store; "
        f"peak RSS (ru_maxrss) as seen by a small parent process. Medians of {len(c)} runs each, interleaved."
    )
    rows = [
        [
            "controller (200-trial study)" if trials == STUDY_TRIALS else f"controller ({trials} trials)",
            median([r["after_imports_mb"] for r in c]),
            median([r["peak_rss_mb"] for r in c]),
            median([r["end_mb"] for r in c]),
            median([r["wall_s"] for r in c]),
        ],
        [
            "trial (1 epoch, full data)",
            float("nan"),
            median([r["peak_rss_mb"] for r in t]),
            float("nan"),
            median([r["wall_s"] for r in t]),
        ],
    ]
    s.add(table(["process", "RSS after imports MB", "peak RSS MB", "RSS at end MB", "wall s"], rows))
    s.data = {"runs": runs}
    return s


if __name__ == "__main__":
    print(json.dumps(_controller(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
