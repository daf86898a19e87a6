"""A study of two objectives and a constraint, through the loop, its views and commands (issue 25).

The trial is the synthetic one (tests/synthetic.py): accuracy from the fake
CNN's curve, a model size that grows with the dense layers and nodes, so the
two objectives pull apart, and a val_loss the constraint bounds.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubetune import cli
from kubetune.contract import BEST_OBJECT, HISTORY_OBJECT, SCHEMA_VERSION, Params, TrialResult
from kubetune.controller import objectives, report
from kubetune.controller.history import read_history
from kubetune.controller.leaderboard import Summary, front
from kubetune.controller.study import Study
from kubetune.kubernetes.observer import JobObserver
from kubetune.spec import Confirm, Spec, parse_spec
from kubetune.store import Store, open_store
from tests.synthetic import InProcessLauncher

SPEC = parse_spec(
    """
    name: two
    objectives: [{metric: val_accuracy}, {metric: param_count}]
    constraints: [{metric: val_loss, max: 0.2}]
    optimizer: {n_initial_points: 4, random_state: 3}
    budget: {max_trials: 12}
    trial: {epochs: 1}
    """
)


def size(p: Params) -> dict[str, float]:
    """The model grows with its dense layers; its val_loss shrinks as the accuracy grows."""
    from tests.fake_trial import objective

    return {"param_count": float(p["num_dense_layers"]) * float(p["num_dense_nodes"]) * 100,
            "val_loss": 1.0 - objective(p)}  # fmt: skip


def run(spec: Spec, store: Store) -> Study:
    study = Study(spec, store, InProcessLauncher(store, metrics=size, wall_s=2.0), poll_s=0.0)
    study.run()
    return study


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = open_store(str(tmp_path_factory.mktemp("two")))
    run(SPEC, s)
    return s


def test_best_json_holds_the_feasible_front(store: Store) -> None:
    doc = json.loads(store.get(BEST_OBJECT))
    results = read_history(store, SPEC).ordered_results()
    assert doc["schema"] == SCHEMA_VERSION
    assert doc["objectives"] == [{"metric": "val_accuracy", "goal": "maximize"},
                                 {"metric": "param_count", "goal": "minimize"}]  # fmt: skip
    assert doc["constraints"] == [{"metric": "val_loss", "max": 0.2}]
    members = doc["front"]
    assert [m["index"] for m in members] == [r.index for r in front(SPEC, results)] and len(members) >= 2
    for m in members:
        assert set(m) == {"index", "values", "params", "metrics", "wall_time_s"}
        assert m["metrics"]["val_loss"] <= 0.2  # feasible
        assert set(m["values"]) == {"val_accuracy", "param_count"}
    accuracies = [m["values"]["val_accuracy"] for m in members]
    sizes = [m["values"]["param_count"] for m in members]
    assert accuracies == sorted(accuracies, reverse=True) and sizes == sorted(
        sizes, reverse=True
    )  # a trade-off
    assert doc["best"]["index"] == members[0]["index"]  # the first objective's best feasible trial


def test_history_csv_says_which_trials_are_on_the_front_and_feasible(store: Store) -> None:
    rows = list(csv.DictReader(io.StringIO(store.get(HISTORY_OBJECT).decode())))
    header = next(csv.reader(io.StringIO(store.get(HISTORY_OBJECT).decode())))
    assert header[:6] == ["index", "status", "epoch", "objective", "pareto", "feasible"]
    results = {r.index: r for r in read_history(store, SPEC).ordered_results()}
    on_front = {r.index for r in front(SPEC, list(results.values()))}
    for row in rows:
        r = results[int(row["index"])]
        assert row["pareto"] == str(r.index in on_front).lower()
        assert row["feasible"] == str(objectives.feasible(SPEC, r)).lower()
    assert any(row["feasible"] == "false" for row in rows)  # the design drew some infeasible points


def test_best_prints_the_front_and_picks_a_member(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(store.get(BEST_OBJECT))
    assert cli.main(["best", store.uri]) == 0
    assert json.loads(capsys.readouterr().out) == doc["front"]
    assert cli.main(["best", store.uri, "--pick", "param_count"]) == 0
    smallest = json.loads(capsys.readouterr().out)
    assert smallest == min(doc["front"], key=lambda m: m["values"]["param_count"])
    assert cli.main(["best", store.uri, "--pick", "val_loss"]) == 2
    assert "--pick: 'val_loss' is not an objective of the study; pick one of val_accuracy, param_count" in (
        capsys.readouterr().err
    )


def test_the_status_table_marks_the_front_and_the_infeasible(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", store.uri, "-o", "table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert (
        lines[1]
        == "OBJECTIVE      val_accuracy (maximize), param_count (minimize); subject to val_loss <= 0.2"
    )
    front_line = next(line for line in lines if line.startswith("PARETO FRONT"))
    doc = json.loads(store.get(BEST_OBJECT))
    assert front_line.endswith(", ".join(str(m["index"]) for m in doc["front"]))
    assert "succeeded (front)" in out and "succeeded (infeasible)" in out
    header = next(line for line in lines if line.startswith("TRIAL "))
    # The other objective and the constrained metric lead the metric columns.
    assert header.split()[2:][:1] == ["VAL_ACCURACY"] and "PARAM_COUNT   VAL_LOSS" in header


def test_the_report_draws_the_front_and_keeps_every_section(store: Store) -> None:
    spec, results = SPEC, read_history(store, SPEC).ordered_results()
    figures = report.draw_figures(spec, results)
    assert set(figures.images) == {*report.PLOTS, "pareto"} - {"learning_curves"}
    page = report.report_html(spec, results, figures)
    for section in (
        "Leaderboard",
        "Pareto front",
        "Plots",
        "Trial timings",
        "Failed and stopped trials",
        "Spec",
    ):
        assert f"<h2>{section}</h2>" in page
    assert "plots/pareto.png" in page


def test_a_resumed_study_asks_what_an_uninterrupted_one_asks(store: Store, tmp_path: Path) -> None:
    parts = open_store(str(tmp_path))
    for stop in (5, 8, 12):  # three controllers, each replaying what the last left
        run(replace(SPEC, budget=replace(SPEC.budget, max_trials=stop)), parts)
    whole, resumed = read_history(store, SPEC), read_history(parts, SPEC)
    assert [resumed.launched[i].params for i in sorted(resumed.launched)] == [
        whole.launched[i].params for i in sorted(whole.launched)
    ]


def test_a_one_objective_study_writes_no_front(tmp_path: Path) -> None:
    spec = parse_spec(
        "name: one\noptimizer: {n_initial_points: 2}\nbudget: {max_trials: 3}\ntrial: {epochs: 1}"
    )
    s = open_store(str(tmp_path))
    run(spec, s)
    doc = json.loads(s.get(BEST_OBJECT))
    assert "front" not in doc and "objectives" not in doc
    assert s.get(HISTORY_OBJECT).decode().startswith("index,status,epoch,objective,param.")


def test_confirmation_reruns_the_front_capped_by_top_k(tmp_path: Path) -> None:
    s = open_store(str(tmp_path))
    spec = replace(SPEC, confirm=Confirm(top_k=2, seeds=1))
    study = run(spec, s)
    searched = study.history.ordered_results()
    confirmed = {launch.confirms for launch in study.history.confirmations().values()}
    assert confirmed == {r.index for r in front(spec, searched)[:2]}
    doc = json.loads(s.get(BEST_OBJECT))
    assert [c["index"] for c in doc["confirmation"]["configs"]] == [m["index"] for m in doc["front"][:2]]


def test_a_finished_trials_job_is_labelled_with_every_weighed_metric() -> None:
    observer = JobObserver.__new__(JobObserver)
    observer.study, observer.owner, observer.params = "two", None, frozenset()
    observer.weighed = ("param_count", "val_loss")
    patched: list[dict[str, Any]] = []
    observer._patch = lambda name, patch: patched.append(patch)  # type: ignore[method-assign]
    observer._event = lambda *args, **kw: None  # type: ignore[method-assign]
    metrics = {"val_accuracy": 0.9, "param_count": 1200.0, "val_loss": 0.1, "loss": 0.2}
    result = TrialResult(index=3, status="succeeded", params={}, objective="val_accuracy",
                         objective_value=0.9, metrics=metrics)  # fmt: skip
    observer.trial_finished(result, Summary(1, 1, 0, result), 0)
    labels = patched[0]["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k != "kubetune.dev/status"} == {
        "kubetune.dev/val_accuracy": "0.9",
        "kubetune.dev/param_count": "1200",
        "kubetune.dev/val_loss": "0.1",
    }


def test_the_reports_leaderboard_lists_the_infeasible_last_and_the_weighed_metrics_first(
    store: Store,
) -> None:
    results = read_history(store, SPEC).ordered_results()
    page = report.report_html(SPEC, results, report.Figures())
    board = page.split("<h2>Leaderboard</h2>", 1)[1].split("<h2>", 1)[0]
    assert board.index("<th>param_count</th>") < board.index("<th>val_loss</th>")
    broke = [r for r in results if not objectives.feasible(SPEC, r)]
    assert board.count("<td>infeasible</td>") == len(broke) > 0
    assert f"{len(broke)} succeeded trials broke a constraint" in page
