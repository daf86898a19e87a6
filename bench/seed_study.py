"""8. The seed study, reproduced: the notebook's search, end to end, run by kubetune itself.

``examples/notebook.yaml`` (60 trials x 3 epochs on all 54,000 training
images, x0 = the notebook's guess, EI, the notebook's space) runs as a user
runs it: ``kubetune run`` with the local launcher and a local store, every
trial a process of its own. The configuration is chosen by validation
accuracy, the study's objective; its test accuracy is the result. The
notebook's 0.9098 is the best test accuracy of its 60 trials, so chosen on
the test set: the same choice among this study's trials stands beside it.

On demand only (about an hour on 2 cores), not in ``make bench``'s set:
``python -m bench seed_study``. The study's log is WORK/seed-study.log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import yaml

from bench.common import REPO, Context, Section, log, machine, median, table
from bench.throughput import KUBETUNE_BIN, prepared_data_dir
from kubetune.contract import TrialResult
from kubetune.controller.history import read_study
from kubetune.spec import Spec, parse_spec
from kubetune.store import open_store

NOTEBOOK_SPEC = REPO / "examples" / "notebook.yaml"
# The notebook's gp_minimize (60 calls): the best test accuracy it saw, and where.
NOTEBOOK_TEST_ACCURACY = 0.9098
NOTEBOOK_BEST = {"learning_rate": 0.00775, "num_dense_layers": 1, "num_dense_nodes": 296}
CHECKPOINTS = (10, 20, 30, 40, 50, 60)
# A smoke run: the same path on a few hundred images, one epoch, three trials.
SMOKE = {"budget": {"max_trials": 3}, "optimizer": {"n_initial_points": 1},
         "trial": {"epochs": 1, "train_subset": 1024, "test_subset": 512}}  # fmt: skip


def study_spec(smoke: bool) -> Spec:
    doc = yaml.safe_load(NOTEBOOK_SPEC.read_text())
    for section, values in (SMOKE if smoke else {}).items():
        doc[section].update(values)
    return parse_spec(yaml.safe_dump(doc), source=str(NOTEBOOK_SPEC))


def run(ctx: Context) -> Section:
    spec = study_spec(ctx.smoke)
    path, store, logs = ctx.work / "seed-study.yaml", ctx.work / "seed-study", ctx.work / "seed-study.log"
    path.write_text(spec.to_yaml())
    env = {**os.environ, "KUBETUNE_DATA_DIR": str(prepared_data_dir(ctx)), "KUBETUNE_LOG_FORMAT": "json"}
    log(f"seed study: {spec.budget.max_trials} trials into {store}, log {logs}")
    t0 = time.monotonic()
    with logs.open("w") as out:
        subprocess.run([KUBETUNE_BIN, "run", str(path), "--store", str(store)],
                       env=env, stdout=out, stderr=subprocess.STDOUT, check=True)  # fmt: skip
    wall = time.monotonic() - t0
    _, history = read_study(open_store(str(store)))
    return _section(spec, history.ordered_results(), wall)


def _accuracy(r: TrialResult, metric: str) -> float:
    return float(r.metrics.get(metric, float("nan")))


def _acc(v: float) -> str:
    return f"{v:.4f}"  # accuracies differ in the third decimal: table()'s 3 digits would hide it


def _row(label: str, r: TrialResult, space: Sequence[str]) -> list[Any]:
    params = {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in r.params.items()}
    point = {k: params[k] for k in space}
    return [label, _acc(_accuracy(r, "val_accuracy")), _acc(_accuracy(r, "test_accuracy")), r.index, point]


def _best_so_far(done: Sequence[TrialResult], k: int) -> float:
    return max((_accuracy(r, "val_accuracy") for r in done if r.index < k), default=float("nan"))


def _section(spec: Spec, results: list[TrialResult], wall: float) -> Section:
    done = [r for r in results if r.succeeded]
    chosen = max(done, key=lambda r: _accuracy(r, "val_accuracy"))
    on_test = max(done, key=lambda r: _accuracy(r, "test_accuracy"))
    trial_s = [r.wall_time_s for r in done if r.wall_time_s is not None]
    names = [d.name for d in spec.space]
    trial, opt = vars(spec.trial), spec.optimizer
    s = Section("seed_study", "8. The seed study, reproduced")
    s.add(
        f"{machine().line()}; tensorflow-cpu. The notebook's study as `examples/notebook.yaml` states it, "
        f"run by `kubetune run` with the local launcher and a local store: {spec.budget.max_trials} trials "
        f"x {trial['epochs']} epochs, batch {trial['batch_size']}, on the training images less a "
        f"{trial['validation_split']:.0%} validation split; x0 = the notebook's guess "
        f"{dict(spec.x0[0]) if spec.x0 else None}; {opt.acq_func} on a {opt.base_estimator}, "
        f"{opt.n_initial_points} random initial points after x0 (as gp_minimize), random_state "
        f"{opt.random_state}, parallel {spec.budget.parallel}. The configuration is chosen by validation "
        "accuracy (the study's objective, what `best.json` names) and reported with its test accuracy. "
        f"The notebook's {NOTEBOOK_TEST_ACCURACY} is the best test accuracy among its 60 trials (its fitness "
        "returned test accuracy, so it chose on the test set, training on all 60,000 images): the same "
        "choice among this study's trials stands beside it, for a like-for-like number.",
        "Rerun: `.venv/bin/python -m bench seed_study` (on demand only; not in `make bench`).",
    )
    rows = [
        _row("kubetune, by validation accuracy", chosen, names),
        _row("kubetune, by test accuracy (as the notebook chose)", on_test, names),
        ["notebook's gp_minimize, by test", "n/a", _acc(NOTEBOOK_TEST_ACCURACY), "n/a", NOTEBOOK_BEST],
    ]
    s.add(table(["choice", "validation accuracy", "test accuracy", "trial", "configuration"], rows))
    marks = [k for k in CHECKPOINTS if k <= spec.budget.max_trials] or [spec.budget.max_trials]
    s.add("Best validation accuracy after k trials:")
    s.add(table([f"after {k}" for k in marks], [[_acc(_best_so_far(done, k)) for k in marks]]))
    failed = len(results) - len(done)
    times = [f"{wall / 60:.1f} min", f"{len(done)} / {failed}", median(trial_s), sum(trial_s) / 60]
    header = ["wall time", "trials succeeded / failed", "trial, median (s)", "trials' sum (min)"]
    s.add(table(header, [times]))
    s.data = {"wall_s": wall, "results": [json.loads(r.to_json()) for r in results]}
    return s
