"""The views speak the study's kind: a program's metrics get columns of their own, the CNN's stay the CNN's.

A program study (three parameters, one of them named ``loss``; ``val_accuracy``
and ``train_accuracy`` reported each epoch, a ``loss`` at the end), written by
hand into a store, read through history.csv, the status table and JSON, and
the report; and a warm-started study, which says what it was told.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kubetune import cli
from kubetune.contract import (
    SPEC_OBJECT,
    EpochRecord,
    LaunchRecord,
    TrialResult,
    epoch_object,
    params_object,
    result_object,
)
from kubetune.controller import report, views
from kubetune.controller.history import read_study
from kubetune.controller.study import Study
from kubetune.spec import parse_spec
from kubetune.store import Store, open_store
from tests.synthetic import InProcessLauncher

PROGRAM = """
name: digits
objective: {metric: val_accuracy}
space:
  - {name: C, type: real, low: 0.01, high: 10, prior: log-uniform}
  - {name: loss, type: categorical, values: [hinge, log_loss]}
  - {name: max_iter, type: integer, low: 10, high: 100}
budget: {max_trials: 4}
trial: {kind: program, command: "python3 digits.py --c {C} --loss {loss} --max-iter {max_iter}"}
"""


def program_store(root: Path) -> Store:
    """Trials 0-2 finished, trial 3 running at epoch 1; each reports val_accuracy and
    train_accuracy per epoch and a final loss (a metric named as a parameter)."""
    store = open_store(str(root))
    store.create(SPEC_OBJECT, parse_spec(PROGRAM).to_yaml().encode())
    for i in range(4):
        params = {"C": 0.5 * (i + 1), "loss": "hinge" if i % 2 else "log_loss", "max_iter": 20 + i}
        store.create(params_object(i), LaunchRecord(i, params, time.time(), "local").to_json())
        curve = [
            {"val_accuracy": 0.8 + 0.01 * i + 0.01 * e, "train_accuracy": 0.9 + 0.01 * e} for e in (1, 2)
        ]
        if i == 3:
            store.create(epoch_object(i, 1), EpochRecord(i, 1, curve[0], time.time()).to_json())
            continue
        final = {**curve[1], "loss": 0.3 - 0.01 * i}
        result = TrialResult(index=i, status="succeeded", params=params, objective="val_accuracy",
                             objective_value=final["val_accuracy"], metrics=final, epoch_metrics=curve,
                             last_epoch=2, wall_time_s=10.0 + i)  # fmt: skip
        store.create(result_object(i), result.to_json())
    return store


def test_history_csv_has_a_column_per_reported_metric_apart_from_the_parameters(tmp_path: Path) -> None:
    spec, history = read_study(program_store(tmp_path))
    text = views.history_csv(spec, history.ordered_results(), history.search_epochs())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["index", "status", "epoch", "objective", "param.C", "param.loss", "param.max_iter",
                       "metric.val_accuracy", "metric.train_accuracy", "metric.loss", "wall_time_s", "reason"]  # fmt: skip
    assert rows[1][:2] == ["0", "succeeded"] and rows[1][5] == "log_loss" and rows[1][9] == "0.3"
    assert rows[4][:3] == ["3", "running", "1"] and rows[4][8] == "0.91"  # its latest epoch's metrics
    assert not {"accuracy", "test_accuracy", "images_per_s"} & {c.removeprefix("metric.") for c in rows[0]}


def test_status_shows_the_programs_metrics_under_a_heading_of_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = program_store(tmp_path)
    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    groups, header = lines[6], lines[7]
    assert header.split() == ["TRIAL", "STATUS", "VAL_ACCURACY", "C", "LOSS", "MAX_ITER", "TRAIN_ACCURACY", "LOSS",
                              "EPOCHS", "WALL", "REASON"]  # fmt: skip
    assert groups.index("PARAMETERS") == header.index(" C ") + 1 and groups.index("METRICS") == header.index(
        "TRAIN"
    )
    assert [line.split()[:2] for line in lines[8:]] == [["2", "succeeded"], ["1", "succeeded"], ["0", "succeeded"],
                                                        ["3", "running"]]  # fmt: skip

    assert cli.main(["status", store.uri, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    top = doc["leaderboard"][0]
    assert (top["params"]["loss"], top["metrics"]["loss"]) == ("log_loss", pytest.approx(0.28))
    assert list(top["metrics"]) == ["val_accuracy", "train_accuracy", "loss"]
    assert doc["running"] == [
        {"index": 3, "epoch": 1, "metrics": {"val_accuracy": pytest.approx(0.84), "train_accuracy": 0.91}}
    ]


def test_the_report_shows_the_programs_metrics_and_none_of_the_cnns(tmp_path: Path) -> None:
    spec, history = read_study(program_store(tmp_path))
    results = history.ordered_results()
    page = report.report_html(spec, results, report.Figures(), epochs=history.search_epochs())
    leaderboard = page.split("<h2>Leaderboard</h2>", 1)[1].split("<h2>", 1)[0]
    assert (
        '<th class="group" colspan="3">parameters</th><th class="group" colspan="2">metrics</th>'
        in leaderboard
    )
    assert "<th>train_accuracy</th><th>loss</th>" in leaderboard
    assert "images/s" not in page and "test accuracy" not in page


def test_the_learning_curves_follow_a_metric_the_trials_report_each_epoch() -> None:
    spec = parse_spec(PROGRAM.replace("{metric: val_accuracy}", "{metric: loss, goal: minimize}"))
    epochs = {0: {1: EpochRecord(0, 1, {"val_accuracy": 0.8, "train_accuracy": 0.9}, 0.0)}}
    assert report.curve_metric(spec, epochs) == "val_accuracy"  # the objective, loss, comes at the end only
    assert report.curve_metric(parse_spec(PROGRAM), epochs) == "val_accuracy"


def test_a_programs_confirmation_says_its_runs_repeat_as_they_are(tmp_path: Path) -> None:
    spec = parse_spec(PROGRAM + "confirm: {top_k: 1, seeds: 2}\n")
    store = open_store(str(tmp_path))
    Study(spec, store, InProcessLauncher(store, score=lambda p: 0.9 - abs(float(p["C"]) - 1) / 20),
          poll_s=0.0).run()  # fmt: skip
    page = store.get("report.html").decode()
    assert "each run again 2 times as it is (the trials have no seed to vary)" in page
    assert "as is, as is" not in page


# --- warm start --------------------------------------------------------------------------------

CNN = """
name: warm
optimizer: {n_initial_points: 2, random_state: 1%(warm)s}
budget: {max_trials: %(trials)d}
trial: {epochs: 1}
"""


def test_a_warm_start_is_logged_shown_by_status_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier = open_store(str(tmp_path / "earlier"))
    Study(parse_spec(CNN % {"warm": "", "trials": 4}), earlier, InProcessLauncher(earlier, fail=frozenset({1})),
          poll_s=0.0).run()  # fmt: skip
    spec = parse_spec(CNN % {"warm": f", warm_start: [{earlier.uri}]", "trials": 2})
    store = open_store(str(tmp_path / "now"))
    with capture_logs() as logs:
        Study(spec, store, InProcessLauncher(store), poll_s=0.0).run()
    [event] = [e for e in logs if e["event"] == "warm_start"]
    assert (event["told"], event["stores"], event["left_out"]) == (3, {earlier.uri: 3},
                                                                   {earlier.uri: {"not succeeded": 1}})  # fmt: skip

    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARM START")]
    assert line.split(None, 2)[2] == "3 earlier trials told first, from 1 stores; left out: 1 not succeeded"
    page = store.get("report.html").decode()
    assert "<h2>Warm start</h2>" in page and "3 earlier trials told first." in page
    assert f'<td class="text">{earlier.uri}</td><td>3</td><td class="text">1 not succeeded</td>' in page


def test_history_csv_has_the_queue_wait_of_a_study_whose_trials_waited(tmp_path: Path) -> None:
    spec, history = read_study(program_store(tmp_path))
    text = views.history_csv(spec, history.ordered_results(), history.search_epochs(), {0: 90.0, 3: 12.5})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-3:] == ["wall_time_s", "queue_wait_s", "reason"]
    assert [row[-2] for row in rows[1:]] == ["90", "", "", "12.5"]  # trial 3 runs, after its wait
