"""The multi-objective search: ParEGO's scalarisation, the probability of feasibility, the suggester."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from kubetune.contract import Params, TrialResult
from kubetune.controller.optimizer import suggest
from kubetune.controller.search import MultiSuggester, feasibility, parego, suggester_for
from kubetune.controller.search.gp import fitted_gp, model
from kubetune.controller.search.space import normalized, row
from kubetune.spec import parse_spec

SPEC = parse_spec(
    """
    name: two
    objectives: [{metric: val_accuracy}, {metric: param_count}]
    optimizer: {n_initial_points: 3, random_state: 5}
    """
)
CONSTRAINED = replace(SPEC, constraints=parse_spec("constraints: [{metric: val_loss, max: 0.2}]").constraints)


def measure(index: int, p: Params) -> TrialResult:
    """Accuracy peaks at learning_rate 1e-3; size grows with the dense layers; the loss is 1 - accuracy."""
    accuracy = 1 - abs(math.log10(float(p["learning_rate"])) + 3) / 5
    size = float(p["num_dense_nodes"]) * float(p["num_dense_layers"])
    metrics = {"val_accuracy": accuracy, "param_count": size, "val_loss": 1 - accuracy}
    return TrialResult(index=index, status="succeeded", params=p, objective="val_accuracy",
                       objective_value=accuracy, metrics=metrics)  # fmt: skip


def history(spec: object, n: int) -> list[TrialResult]:
    done: list[TrialResult] = []
    for i in range(n):
        done.append(measure(i, suggest(spec, i, done, [])))  # type: ignore[arg-type]
    return done


def test_weights_lie_on_the_simplex_and_follow_the_seed() -> None:
    w = parego.weights(3, 7)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert (parego.weights(3, 7) == w).all() and not (parego.weights(3, 8) == w).all()


def test_chebyshev_normalises_each_objective_over_what_was_observed() -> None:
    losses = np.array([[0.0, 1000.0], [1.0, 0.0], [0.5, 500.0]])
    # Normalised: (0, 1), (1, 0), (0.5, 0.5); weights (0.5, 0.5): max 0.5 each, sums 0.5, 0.5, 0.5.
    assert parego.chebyshev(losses, np.array([0.5, 0.5])) == pytest.approx([0.525, 0.525, 0.275])
    assert parego.normalised(np.array([[2.0, 1.0], [2.0, 3.0]])).tolist() == [[0.0, 0.0], [0.0, 1.0]]


def test_probability_of_feasibility() -> None:
    mean, std = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    assert feasibility.probability(mean, std, None, 1.0) == pytest.approx([0.8413, 0.5, 0.0], abs=1e-4)
    assert feasibility.probability(mean, std, 1.0, None) == pytest.approx([0.1587, 0.5, 1.0], abs=1e-4)
    assert feasibility.probability(mean, std, -1.0, 1.0) == pytest.approx([0.6827, 0.4772, 0.0], abs=1e-4)


def test_several_objectives_or_constraints_take_the_multi_objective_suggester() -> None:
    assert isinstance(suggester_for(SPEC, 1), MultiSuggester)
    assert isinstance(suggester_for(CONSTRAINED, 1), MultiSuggester)
    assert not isinstance(suggester_for(parse_spec("name: one"), 1), MultiSuggester)


def test_a_replayed_ask_is_the_same_point_and_a_running_trial_moves_the_next() -> None:
    done = history(SPEC, 8)
    asked = suggest(SPEC, 8, done, [])
    assert suggest(SPEC, 8, done, []) == asked  # a resumed study asks what the first controller asked
    assert suggest(SPEC, 8, done, [asked]) != asked  # pending-aware: the running trial is believed


def test_weights_differ_between_asks_so_the_front_spreads() -> None:
    done = history(SPEC, 14)
    sizes = sorted(r.metrics["param_count"] for r in done[4:])
    accuracies = sorted(r.metrics["val_accuracy"] for r in done[4:])
    # Not all asks chase one objective: both small models and accurate ones are tried.
    assert sizes[0] < 100 and accuracies[-1] > 0.9


def test_constrained_search_stays_where_the_constraint_holds() -> None:
    done = history(CONSTRAINED, 16)
    model_phase = done[4:]
    feasible = [r for r in model_phase if r.metrics["val_loss"] <= 0.2]
    assert len(feasible) >= len(model_phase) * 0.6, [r.metrics["val_loss"] for r in model_phase]


def test_with_nothing_feasible_yet_the_probability_of_feasibility_leads() -> None:
    # Every trial so far breaks the constraint: the next ask heads where val_loss is low.
    spec = replace(
        CONSTRAINED, constraints=parse_spec("constraints: [{metric: val_loss, max: 0.02}]").constraints
    )
    done = [measure(i, {"learning_rate": lr, "num_dense_layers": 1, "num_dense_nodes": 10})
            for i, lr in enumerate([1e-5, 1e-4, 1e-2, 1e-1, 3e-5, 5e-2])]  # fmt: skip
    asked = suggest(replace(spec, x0=(), optimizer=replace(spec.optimizer, n_initial_points=0)), 6, done, [])
    assert 1e-4 < float(asked["learning_rate"]) < 1e-2


def test_a_running_trial_is_believed_per_objective_then_scalarised() -> None:
    spec = replace(SPEC, optimizer=replace(SPEC.optimizer, warp="none"))
    s = MultiSuggester(spec, 11)
    s.tell(history(spec, 8))
    losses = s.losses()
    scalar = parego.chebyshev(losses, s.weights())
    s.observed = [(o.params, float(v)) for o, v in zip(s.outcomes, scalar, strict=True)]
    xs = [row(spec, p) for p, _ in s.observed]
    fitted, ys = model(spec, xs, [float(v) for v in scalar])
    running = [row(spec, {"learning_rate": 0.001, "num_dense_layers": 2, "num_dense_nodes": 100})]
    at = normalized(spec.space).transform(running)
    keys = (spec.space, spec.optimizer.random_state, tuple(map(tuple, xs)))
    means = np.column_stack([fitted_gp(*keys, tuple(losses[:, j])).predict(at) for j in range(2)])
    expected = parego.chebyshev(means, s.weights(), observed=losses)
    assert s.believe(fitted, ys, running) == pytest.approx(expected.tolist())
