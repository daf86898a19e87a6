"""Pareto fronts and hypervolume on hand-made points and histories."""

from __future__ import annotations

import random

import pytest

from kubetune.contract import TrialResult
from kubetune.controller import objectives, pareto
from kubetune.controller.leaderboard import front, ranked
from kubetune.spec import parse_spec

SPEC = parse_spec(
    """
    objectives: [{metric: val_accuracy}, {metric: param_count}]
    constraints: [{metric: val_loss, max: 0.5}]
    """
)


def trial(
    index: int, accuracy: float, size: float, loss: float = 0.3, status: str = "succeeded"
) -> TrialResult:
    metrics = {"val_accuracy": accuracy, "param_count": size, "val_loss": loss}
    value = None if status == "failed" else accuracy
    return TrialResult(index=index, status=status, params={"learning_rate": 0.01 * (index + 1)},  # type: ignore[arg-type]
                       objective="val_accuracy", objective_value=value, metrics=metrics,
                       reason=None if status == "succeeded" else "why")  # fmt: skip


def test_dominance_is_strict_somewhere() -> None:
    assert pareto.dominates((1, 2), (1, 3)) and not pareto.dominates((1, 2), (1, 2))
    assert not pareto.dominates((0, 3), (1, 2)) and not pareto.dominates((1, 2), (0, 3))


def test_front_and_non_dominated_sort() -> None:
    points = [(1, 5), (2, 2), (3, 1), (2, 3), (4, 4), (2, 2)]
    assert pareto.front(points) == [0, 1, 2, 5]  # equal points both stay
    assert pareto.sort(points) == [[0, 1, 2, 5], [3], [4]]
    assert pareto.sort([]) == []


def test_hypervolume_in_two_dimensions_is_exact() -> None:
    # Three staircase steps under (4, 4): 3x1 + 2x1 + 1x1 ... computed by hand as the union of boxes.
    assert pareto.hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert pareto.hypervolume([(1, 3), (2, 2), (3, 1), (3, 3)], (4, 4)) == pytest.approx(
        6.0
    )  # dominated: nothing
    assert pareto.hypervolume([(5, 0), (0, 4)], (4, 4)) == 0.0  # on or past the reference: nothing
    assert pareto.hypervolume([], (1, 1)) == 0.0


def test_hypervolume_in_three_dimensions() -> None:
    assert pareto.hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    # Two unit-offset boxes in a 2-cube: 4 + 4 - overlap 2 (their intersection [1,2]x[1,2]x[0,2]).
    assert pareto.hypervolume([(0, 1, 0), (1, 0, 0)], (2, 2, 2)) == pytest.approx(6.0)


def test_front_of_a_history_leaves_out_the_failed_and_the_infeasible() -> None:
    history = [
        trial(0, 0.90, 1000),
        trial(1, 0.85, 100),
        trial(2, 0.80, 200),  # dominated by 1
        trial(3, 0.95, 5000, loss=0.9),  # the most accurate, but infeasible: never on the front
        trial(4, 0.99, 10, status="failed"),
        trial(5, 0.70, 50),
    ]
    assert [r.index for r in front(SPEC, history)] == [0, 1, 5]  # best first by accuracy
    assert [r.index for r in ranked(SPEC, history)] == [0, 1, 2, 5]  # an infeasible trial never wins
    assert not objectives.feasible(SPEC, history[3]) and objectives.feasible(SPEC, history[0])
    assert objectives.losses(SPEC, history[0]) == (-0.90, 1000)


def test_a_trial_without_a_constrained_metric_is_infeasible() -> None:
    r = trial(0, 0.9, 10)
    lacking = TrialResult(index=1, status="succeeded", params={}, objective="val_accuracy",
                          objective_value=0.9, metrics={"val_accuracy": 0.9, "param_count": 10})  # fmt: skip
    assert objectives.feasible(SPEC, r) and not objectives.feasible(SPEC, lacking)
    assert front(SPEC, [lacking]) == []


def test_the_two_dimensional_sweep_agrees_with_the_slicing() -> None:
    # A third coordinate of 0 under a reference of 1 leaves the 2-D area: the general path computes it.
    rng = random.Random(4)
    points = [(rng.random(), rng.random()) for _ in range(40)]
    flat = [(x, y, 0.0) for x, y in points]
    assert pareto.hypervolume(points, (1.0, 1.0)) == pytest.approx(pareto.hypervolume(flat, (1.0, 1.0, 1.0)))
