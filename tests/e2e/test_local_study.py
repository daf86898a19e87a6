"""Real local studies: the CLI, real trial subprocesses training the CNN, a local store."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubetune.contract import LaunchRecord, Params, TrialResult, params_object, result_object
from kubetune.store import open_store

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")

TINY = """
name: tiny
optimizer: {n_initial_points: 2, random_state: 1}
budget: {max_trials: %(trials)d, parallel: %(parallel)d, max_failed: 2}
trial: {epochs: 1, train_subset: 1024, test_subset: 512, batch_size: 256}
"""


def write_spec(tmp_path: Path, trials: int, parallel: int) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(TINY % {"trials": trials, "parallel": parallel})
    return path


def env_for(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "KUBETUNE_DATA_DIR": str(data_dir), "KUBETUNE_LOG_FORMAT": "json"}


def kubetune(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBETUNE, *args], env=env, capture_output=True, text=True, timeout=600)


def test_a_real_study_finds_and_reports_its_best(tmp_path: Path, prepared_data_dir: Path) -> None:
    env = env_for(prepared_data_dir)
    spec = write_spec(tmp_path, trials=4, parallel=2)
    store = tmp_path / "store"
    run = kubetune("run", str(spec), "--store", str(store), env=env)
    assert run.returncode == 0, run.stderr[-2000:]

    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["status"] == "succeeded" for r in rows)
    top = max(rows, key=lambda r: float(r["objective"]))
    best = json.loads((store / "best.json").read_text())["best"]
    assert best["index"] == int(top["index"])
    assert best["value"] == pytest.approx(float(top["objective"]), rel=1e-5)

    out = kubetune("best", str(store), env=env)
    assert out.returncode == 0
    assert json.loads(out.stdout)["params"] == best["params"]

    again = kubetune("run", str(spec), "--store", str(store), env=env)  # finished: nothing to do
    assert again.returncode == 0
    assert "trial_started" not in again.stderr


def _count(store: Path, name: str) -> int:
    return len(list((store / "trials").glob(f"*/{name}"))) if (store / "trials").exists() else 0


def test_a_runner_killed_twice_resumes_and_completes(tmp_path: Path, prepared_data_dir: Path) -> None:
    env = env_for(prepared_data_dir)
    trials = 6
    spec = write_spec(tmp_path, trials=trials, parallel=2)
    store = tmp_path / "store"
    first_params: dict[int, Params] = {}
    for kill_after in (1, 3):  # SIGKILL once a result exists, then again mid-way
        runner = subprocess.Popen(
            [KUBETUNE, "run", str(spec), "--store", str(store)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while _count(store, "result.json") < kill_after and time.monotonic() < deadline:
            time.sleep(0.2)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        s = open_store(str(store))
        for name in s.list("trials/"):
            if name.endswith("params.json"):
                rec = LaunchRecord.from_json(s.get(name))
                first_params.setdefault(rec.index, rec.params)
    assert _count(store, "result.json") < trials  # it really was interrupted

    final = kubetune("run", str(spec), "--store", str(store), env=env)
    assert final.returncode == 0, final.stderr[-2000:]
    s = open_store(str(store))
    results = [TrialResult.from_json(s.get(result_object(i))) for i in range(trials)]
    assert [r.index for r in results] == list(range(trials))
    assert not (store / "trials" / f"{trials:06d}").exists()  # no extra trial
    for i, params in first_params.items():  # a relaunched trial kept its parameters
        assert LaunchRecord.from_json(s.get(params_object(i))).params == params
        assert {k: results[i].params[k] for k in params} == params
    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert sorted(int(r["index"]) for r in rows) == list(range(trials))


def test_a_bad_spec_creates_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("budget: {parallel: 0}\n")
    store = tmp_path / "store"
    out = kubetune("run", str(spec), "--store", str(store), env=dict(os.environ))
    assert out.returncode == 2
    assert out.stderr.strip() == "kubetune: budget.parallel: must be at least 1, got 0"
    assert not store.exists()


STOPPING = """
name: stopping
space:
  - {name: learning_rate, type: real, low: 1.0e-5, high: 1.0e-1, prior: log-uniform}
optimizer: {n_initial_points: 6, random_state: 2}
budget: {max_trials: 6, parallel: 2, max_failed: 1}
stopping: {rule: asha, eta: 2}
trial: {epochs: 4, train_subset: 4096, test_subset: 512, batch_size: 256}
"""


def test_a_real_cnn_study_prunes_trials_with_asha(tmp_path: Path, prepared_data_dir: Path) -> None:
    # The real trial and loop; only the controller reads epochs every 0.2 s
    # (not 5 s): these epochs take about a second, a real one minutes.
    from kubetune.controller.history import read_study
    from kubetune.controller.study import Study
    from kubetune.launcher import LocalLauncher
    from kubetune.spec import parse_spec

    store = open_store(str(tmp_path / "store"))
    launcher = LocalLauncher(tmp_path / "logs", env={"KUBETUNE_DATA_DIR": str(prepared_data_dir)})
    try:
        outcome = Study(parse_spec(STOPPING), store, launcher, epochs_poll_s=0.2).run()
    finally:
        launcher.close()
    assert outcome.completed

    _, history = read_study(store)
    statuses = [r.status for r in history.ordered_results()]
    assert "pruned" in statuses and "succeeded" in statuses, statuses
    for r in history.ordered_results():
        curve = history.curve(r.index, "val_accuracy")
        if r.pruned:
            assert r.last_epoch is not None and 1 <= r.last_epoch < 4
            assert len(curve) == r.last_epoch
            assert r.metrics["val_accuracy"] == curve[-1] == r.objective_value
            assert "test_accuracy" not in r.metrics  # never evaluated on the test split
        else:
            assert r.succeeded and r.last_epoch == 4 and len(curve) == 4
    best = json.loads(store.get("best.json"))
    assert history.results[best["best"]["index"]].succeeded
    assert best["trials"]["pruned"] == statuses.count("pruned")


CONFIRM = TINY % {"trials": 2, "parallel": 2} + "confirm: {top_k: 1, seeds: 2}\n"


def test_a_real_study_confirms_its_best_and_hands_over_the_model(
    tmp_path: Path, prepared_data_dir: Path
) -> None:
    env = env_for(prepared_data_dir)
    spec = tmp_path / "spec.yaml"
    spec.write_text(CONFIRM)
    store = tmp_path / "store"
    run = kubetune("run", str(spec), "--store", str(store), env=env)
    assert run.returncode == 0, run.stderr[-2000:]

    # Two search trials with seed 0, then the better one twice more with seeds 1 and 2.
    launches = [LaunchRecord.from_json((store / params_object(i)).read_bytes()) for i in range(4)]
    results = [TrialResult.from_json((store / result_object(i)).read_bytes()) for i in range(4)]
    assert [(r.confirms, r.seed) for r in launches[:2]] == [(None, None)] * 2
    chosen = max(results[:2], key=lambda r: r.objective_value or 0.0)
    assert [(r.confirms, r.seed) for r in launches[2:]] == [(chosen.index, 1), (chosen.index, 2)]
    assert [r.seed for r in results] == [0, 0, 1, 2]  # the trials trained with the seeds asked
    assert not list((store / "trials").glob("00000[01]/model.keras"))  # search trials keep no model

    best = json.loads((store / "best.json").read_text())["best"]
    values = [r.metrics["val_accuracy"] for r in results[2:]]
    assert best["index"] == chosen.index and best["value"] == pytest.approx(sum(values) / 2)
    assert best["confirmed"]["n"] == 2 and best["confirmed"]["runs"] == [2, 3]
    tests = [r.metrics["test_accuracy"] for r in results[2:]]
    assert best["metrics"]["test_accuracy"] == pytest.approx(sum(tests) / 2)
    assert best["model"]["object"] == "model.keras"
    assert "<h2>Confirmation</h2>" in (store / "report.html").read_text()

    out = kubetune("best", str(store), "--model", str(tmp_path / "model"), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    path = tmp_path / "model" / "model.keras"
    assert json.loads(out.stdout)["model_path"] == str(path)
    assert path.read_bytes() == (store / "model.keras").read_bytes()

    import keras
    import numpy as np

    model = keras.saving.load_model(path)
    # The winner's best run, as trained: it predicts the ten classes.
    assert model.predict(np.zeros((1, 28, 28, 1), "float32"), verbose=0).shape == (1, 10)
    assert model.count_params() == results[best["model"]["run"]].metrics["param_count"]


TWO_OBJECTIVES = """
name: tiny-two
objectives: [{metric: val_accuracy}, {metric: param_count}]
constraints: [{metric: wall_time_s, max: 3600}]
optimizer: {n_initial_points: 2, random_state: 1}
budget: {max_trials: 4, parallel: 1, max_failed: 2}
trial: {epochs: 1, train_subset: 1024, test_subset: 512, batch_size: 256}
"""


def test_a_real_study_of_two_objectives_and_a_constraint_reports_its_front(
    tmp_path: Path, prepared_data_dir: Path
) -> None:
    env = env_for(prepared_data_dir)
    spec = tmp_path / "spec.yaml"
    spec.write_text(TWO_OBJECTIVES)
    store = tmp_path / "store"
    run = kubetune("run", str(spec), "--store", str(store), env=env)
    assert run.returncode == 0, run.stderr[-2000:]

    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert [r["status"] for r in rows] == ["succeeded"] * 4
    assert all(r["feasible"] == "true" for r in rows)  # every tiny trial is well within the hour
    assert all(float(r["metric.param_count"]) > 0 and float(r["metric.wall_time_s"]) > 0 for r in rows)
    doc = json.loads((store / "best.json").read_text())
    on_front = {int(r["index"]) for r in rows if r["pareto"] == "true"}
    assert {m["index"] for m in doc["front"]} == on_front and on_front
    assert json.loads(run.stdout) == {"front": doc["front"]}  # what run prints at its end
    # The front trades accuracy for size: the most accurate member is the largest.
    members = doc["front"]
    assert [m["values"]["param_count"] for m in members] == sorted(
        (m["values"]["param_count"] for m in members), reverse=True
    )
    out = kubetune("best", str(store), "--pick", "param_count", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["index"] == members[-1]["index"]
