"""The GP loop over a real local store, with the trial replaced by a cheap function."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kubetune.contract import (
    BEST_OBJECT,
    HISTORY_OBJECT,
    AttemptRecord,
    LaunchRecord,
    Params,
    TrialResult,
    attempt_object,
    failed_result,
    params_object,
    result_object,
)
from kubetune.controller import optimizer, search
from kubetune.controller.history import read_history
from kubetune.controller.leaderboard import best_of
from kubetune.controller.study import Plan, Study
from kubetune.errors import UsageError
from kubetune.spec import Budget, Spec, parse_spec
from kubetune.store import Store, open_store
from tests.synthetic import InProcessLauncher

SPEC = parse_spec(
    """
    name: loop
    optimizer: {n_initial_points: 4, random_state: 3}
    budget: {max_trials: 9, parallel: 1, max_failed: 3}
    trial: {epochs: 1}
    """
)


def run(spec: Spec, store: Store, **kw: object) -> tuple[Study, InProcessLauncher]:
    launcher = InProcessLauncher(store, **kw)  # type: ignore[arg-type]
    study = Study(spec, store, launcher, poll_s=0.0)
    study.run()
    return study, launcher


def points(store: Store) -> list[Params]:
    h = read_history(store, SPEC)
    return [h.launched[i].params for i in sorted(h.launched)]


def test_study_runs_its_budget_and_publishes_views(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    study, launcher = run(SPEC, store)
    assert [r.index for r in launcher.launched] == list(range(9))
    # The notebook's x0, completed with the knobs not searched: the notebook's, and trial.epochs.
    assert launcher.launched[0].params == {
        "learning_rate": 0.001,
        "num_dense_layers": 1,
        "num_dense_nodes": 12,
        "batch_size": 512,
        "epochs": 1,
        "dropout": 0.0,
        "conv1_filters": 32,
        "conv2_filters": 64,
        "kernel_size": 3,
        "optimizer": "adam",
    }
    best = json.loads(store.get(BEST_OBJECT))
    results = study.history.ordered_results()
    top = max(results, key=lambda r: r.objective_value or 0)
    assert best["best"]["index"] == top.index and best["best"]["value"] == top.objective_value
    rows = store.get(HISTORY_OBJECT).decode().splitlines()
    assert rows[0].startswith("index,status,epoch,objective,param.learning_rate")
    assert len(rows) == 10


def test_model_phase_improves_on_the_initial_design(tmp_path: Path) -> None:
    spec = replace(SPEC, budget=Budget(max_trials=16, parallel=1, max_failed=3))
    study, _ = run(spec, open_store(str(tmp_path)))
    values = [r.objective_value or 0 for r in study.history.ordered_results()]
    initial = len(spec.x0) + spec.optimizer.n_initial_points  # x0 and the 4 random points
    assert initial == 5
    assert max(values[initial:]) > max(values[:initial])  # the GP found something the design did not


def test_resume_asks_exactly_what_an_uninterrupted_run_asks(tmp_path: Path) -> None:
    whole = open_store(str(tmp_path / "whole"))
    run(SPEC, whole)
    parts = open_store(str(tmp_path / "parts"))
    for stop in (2, 5, 9):  # three controllers, each replaying what the last left
        run(replace(SPEC, budget=replace(SPEC.budget, max_trials=stop)), parts)
    assert points(parts) == points(whole)


def test_an_orphaned_launch_is_relaunched_with_the_same_params(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(replace(SPEC, budget=replace(SPEC.budget, max_trials=5)), store)
    # A controller died after handing out index 5 but before it finished.
    orphan = optimizer.suggest(SPEC, 5, read_history(store, SPEC).ordered_results(), [])

    store.create(params_object(5), LaunchRecord(5, orphan, 0.0, "synthetic").to_json())
    _, launcher = run(SPEC, store)
    assert launcher.launched[0].index == 5 and launcher.launched[0].params == SPEC.full_params(orphan)
    h = read_history(store, SPEC)
    assert sorted(h.results) == list(range(9))


def test_failures_are_recorded_and_not_told(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    study, _ = run(SPEC, store, fail=frozenset({1, 2}))
    failed = [r for r in study.history.ordered_results() if not r.succeeded]
    assert [r.index for r in failed] == [1, 2]
    assert failed[0].reason == "exited with code 1"
    assert json.loads(store.get(result_object(1)))["status"] == "failed"
    assert len(search.observations(SPEC, study.history.ordered_results())) == 7


def test_failure_penalty_is_told_when_asked_for() -> None:
    spec = replace(SPEC, budget=replace(SPEC.budget, failure_penalty=0.0))

    obs = search.observations(spec, [failed_result(0, {"learning_rate": 0.01}, "val_accuracy", "x")])
    assert obs == [({"learning_rate": 0.01}, -0.0)]


def test_max_failed_stops_the_study(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    launcher = InProcessLauncher(store, fail=frozenset({0, 1, 2, 3}))
    outcome = Study(SPEC, store, launcher, poll_s=0.0).run()
    assert not outcome.completed
    assert outcome.summary.failed == 3 and len(launcher.launched) == 3


def test_parallel_trials_get_distinct_points(tmp_path: Path) -> None:
    spec = replace(SPEC, budget=replace(SPEC.budget, parallel=3))
    study, launcher = run(spec, open_store(str(tmp_path)))
    model_phase = [tuple(sorted(r.params.items())) for r in launcher.launched[4:]]
    assert len(set(model_phase)) == len(model_phase)
    assert len(study.history.results) == 9


def test_a_store_holding_another_study_is_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(replace(SPEC, budget=replace(SPEC.budget, max_trials=2)), store)
    with pytest.raises(UsageError, match="optimizer: differs from the study already in"):
        run(replace(SPEC, optimizer=replace(SPEC.optimizer, random_state=4)), store)
    assert len(read_history(store, SPEC).launched) == 2


def test_malformed_result_counts_as_failed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.create(params_object(0), LaunchRecord(0, {"learning_rate": 0.01}, 0.0, "local").to_json())
    store.create(result_object(0), b'{"index": 0, "status": "succeeded", "objective_value": NaN}')
    h = read_history(store, SPEC)
    assert not h.results[0].succeeded and "malformed result record" in (h.results[0].reason or "")
    assert best_of(SPEC, h.ordered_results()) is None


LAUNCHED: Params = {"learning_rate": 0.01, "num_dense_layers": 2, "num_dense_nodes": 40}


def forged(store: Store, under: int, **changes: object) -> TrialResult:
    """Trial ``under`` launched with LAUNCHED, and a result that says ``changes`` of itself."""
    store.create(params_object(under), LaunchRecord(under, LAUNCHED, 0.0, "local").to_json())
    base = {"index": under, "status": "succeeded", "params": SPEC.full_params(LAUNCHED), "objective": "val_accuracy",
            "objective_value": 0.99, "metrics": {"val_accuracy": 0.99}, **changes}  # fmt: skip
    store.create(result_object(under), json.dumps(base).encode())
    return read_history(store, SPEC).results[under]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"index": 5}, "result for trial 5 found under trial 1"),
        ({"params": {}}, "result without parameter 'learning_rate', launched as 0.01"),
        ({"params": {**LAUNCHED, "learning_rate": 0.5}}, "result for learning_rate=0.5, launched with learning_rate=0.01"),
        ({"objective": "val_loss", "metrics": {"val_loss": 0.99}}, "result for objective 'val_loss', the study's is 'val_accuracy'"),
        ({"attempt": 2}, "result from attempt 2, but trial 1 is on attempt 0"),
    ],
)  # fmt: skip
def test_a_result_that_does_not_answer_its_launch_is_that_trials_failure(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    result = forged(open_store(str(tmp_path)), 1, **changes)
    assert result.failed and result.reason == reason
    assert result.params == LAUNCHED  # the controller's own record of what ran
    assert best_of(SPEC, [result]) is None


def test_a_forged_result_never_becomes_the_best_and_every_trial_keeps_its_row(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(replace(SPEC, budget=replace(SPEC.budget, max_trials=3)), store)
    # Trial 3 claims to be trial 0 with a perfect score; its own row must stay, failed.
    forged(store, 3, index=0, objective_value=1.0, metrics={"val_accuracy": 1.0})
    run(replace(SPEC, budget=replace(SPEC.budget, max_trials=5)), store)
    best = json.loads(store.get(BEST_OBJECT))["best"]
    assert best["index"] != 3 and best["value"] < 1.0
    rows = store.get(HISTORY_OBJECT).decode().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows][:4] == [["0", "succeeded"], ["1", "succeeded"],
                                                        ["2", "succeeded"], ["3", "failed"]]  # fmt: skip


def test_an_earlier_attempts_late_result_is_the_trials_own(tmp_path: Path) -> None:
    # A cut-off node's pod wrote its result after the controller had launched attempt 1.
    store = open_store(str(tmp_path))
    store.create(attempt_object(1, 0), AttemptRecord(1, 0, "node_lost", "lost", 0.0, 1.0).to_json())
    assert forged(store, 1, attempt=0).succeeded


# --- the loop's stages, one at a time -------------------------------------------------------------


def test_decide_plans_the_free_slots_without_launching_or_writing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    run(replace(SPEC, budget=replace(SPEC.budget, max_trials=3)), store)
    spec = replace(SPEC, budget=replace(SPEC.budget, max_trials=9, parallel=3))
    launcher = InProcessLauncher(store)
    study = Study(spec, store, launcher, poll_s=0.0)
    study.history = read_history(store, spec)
    objects = store.list()

    plan = study.decide()
    assert plan.again == () and [r.index for r in plan.new] == [3, 4, 5]
    # Each point knows the ones before it in the plan, as running trials: three distinct points.
    assert len({json.dumps(r.params, sort_keys=True) for r in plan.new}) == 3
    assert [r.params for r in plan.new] == [
        optimizer.suggest(spec, 3 + k, study.history.ordered_results(), [p.params for p in plan.new[:k]])
        for k in range(3)
    ]
    assert launcher.launched == [] and store.list() == objects  # a plan, nothing done

    study.launch(plan)
    assert [r.index for r in launcher.launched] == [3, 4, 5] and sorted(launcher.running()) == [3, 4, 5]
    assert study.decide() == Plan()  # no slot left


def test_decide_puts_a_lost_trial_due_again_before_new_points(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    spec = replace(SPEC, budget=replace(SPEC.budget, max_trials=4, parallel=2, retry_backoff_s=0))
    launcher = InProcessLauncher(store, lose={0: ("evicted", 1)})
    study = Study(spec, store, launcher, poll_s=0.0)
    study.history = read_history(store, spec)
    study.launch(study.decide())  # trials 0 and 1
    finished = study.collect(launcher.wait(0))  # trial 0 lost: recorded, no result
    assert finished == [] and study.history.attempt(0) == 1
    plan = study.decide()
    assert plan.again == (0,) and [r.index for r in plan.new] == []  # one slot: the lost trial's
