"""Warm start: told an earlier study's trials, a study finds its best sooner; a mismatch is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kubetune.controller.study import Study
from kubetune.spec import OptimizerSettings, Spec, SpecError, parse_spec
from kubetune.store import open_store
from tests.synthetic import InProcessLauncher

FIRST = parse_spec(
    """
    name: first
    optimizer: {n_initial_points: 6, random_state: 1}
    budget: {max_trials: 20}
    trial: {epochs: 1}
    """
)


def values(spec: Spec, uri: Path) -> list[float]:
    store = open_store(str(uri))
    study = Study(spec, store, InProcessLauncher(store), poll_s=0.0)
    study.run()
    return [r.objective_value or 0.0 for r in study.history.ordered_results()]


def trials_to(values: list[float], goal: float) -> int | None:
    return next((i + 1 for i, v in enumerate(values) if v >= goal), None)


def warm(spec: Spec, *stores: Path) -> Spec:
    return replace(spec, optimizer=replace(spec.optimizer, warm_start=tuple(map(str, stores))))


def test_a_warm_started_study_reaches_the_first_ones_best_in_fewer_trials(tmp_path: Path) -> None:
    first = values(FIRST, tmp_path / "first")
    best = max(first)
    second_spec = warm(replace(FIRST, name="second", optimizer=replace(FIRST.optimizer, random_state=2)),
                       tmp_path / "first")  # fmt: skip
    second = values(second_spec, tmp_path / "second")
    cold = values(
        replace(second_spec, optimizer=replace(second_spec.optimizer, warm_start=())), tmp_path / "cold"
    )
    # The fake objective is smooth: within 0.1 % of the best is reaching it.
    reached_first = trials_to(first, best - 1e-3)
    reached_second = trials_to(second, best - 1e-3)
    assert reached_first is not None and reached_second is not None
    assert reached_second < reached_first
    assert reached_second < (trials_to(cold, best - 1e-3) or len(cold) + 1)  # not just another seed's luck


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("objective: {metric: val_loss}", r"objective minimize val_loss there, maximize val_accuracy here"),
        ("trial: {epochs: 3}", r"trial\.epochs differs \(3 there\)"),
        (
            "objectives: [{metric: val_accuracy}, {metric: param_count}]",
            r"objective maximize val_accuracy, minimize param_count there, maximize val_accuracy here",
        ),
        ("constraints: [{metric: param_count, max: 1000}]", r"constraints differ: a trial feasible there"),
        (
            "space: [{name: learning_rate, type: real, low: 0.0001, high: 0.1}]",
            r"parameters \['learning_rate'\] there",
        ),
        (
            "space: [{name: learning_rate, type: real, low: 0.0001, high: 0.1}, "
            "{name: num_dense_layers, type: categorical, values: [1, 2]}, "
            "{name: num_dense_nodes, type: integer, low: 5, high: 512}]",
            r"num_dense_layers is categorical there, integer here",
        ),
    ],
)
def test_an_incompatible_store_is_refused_before_anything_is_written(
    tmp_path: Path, change: str, message: str
) -> None:
    earlier = parse_spec(f"name: earlier\nbudget: {{max_trials: 2}}\n{change}\n")
    values(earlier, tmp_path / "earlier")
    store = open_store(str(tmp_path / "later"))
    with pytest.raises(SpecError, match=rf"^optimizer\.warm_start\[0\]: {tmp_path}/earlier: {message}"):
        Study(warm(FIRST, tmp_path / "earlier"), store, InProcessLauncher(store), poll_s=0.0).run()
    assert store.list() == []


def test_a_store_without_a_study_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    store = open_store(str(tmp_path / "later"))
    with pytest.raises(SpecError, match=r"^optimizer\.warm_start\[0\]: .*empty: .*no study here"):
        Study(warm(FIRST, tmp_path / "empty"), store, InProcessLauncher(store), poll_s=0.0).run()
    assert store.list() == []


def test_trials_outside_this_space_are_left_out(tmp_path: Path) -> None:
    values(replace(FIRST, budget=replace(FIRST.budget, max_trials=8)), tmp_path / "wide")
    narrow = parse_spec(
        "name: narrow\ntrial: {epochs: 1}\nx0: []\nspace: [{name: learning_rate, type: real, low: 0.0001, "
        "high: 0.002, prior: log-uniform}, {name: num_dense_layers, type: integer, low: 1, high: 5}, "
        "{name: num_dense_nodes, type: integer, low: 5, high: 512}]"
    )
    from kubetune.controller import warmstart

    told, summary = warmstart.load(warm(narrow, tmp_path / "wide"))
    assert 0 < len(told) < 8
    [(uri, count)] = summary.told.items()
    assert uri.endswith("wide") and count == len(told)
    assert summary.left_out[uri] == {"outside this study's space": 8 - len(told)}
    assert all(1e-4 <= float(r.params["learning_rate"]) <= 2e-3 for r in told)


def test_the_spec_reads_warm_start_stores() -> None:
    spec = parse_spec("optimizer: {warm_start: [gs://bucket/a, /data/b]}")
    assert spec.optimizer == OptimizerSettings(warm_start=("gs://bucket/a", "/data/b"))
    assert parse_spec(spec.to_yaml()) == spec  # the snapshot round-trips
    with pytest.raises(SpecError, match=r"^optimizer\.warm_start\[1\]: must be a store"):
        parse_spec("optimizer: {warm_start: [gs://bucket/a, 3]}")
