"""suggest()'s invariants, for every strategy: a replay asks the same points, trials in flight never
share a point, and the spec's pending and warp settings are honoured."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from skopt.sampler import Lhs
from skopt.space import Real as SkReal
from skopt.utils import cook_initial_point_generator

from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer, search, warping
from kubetune.controller.search import gp, trees
from kubetune.spec import (
    BASE_ESTIMATORS,
    DESIGN_MAX,
    PENDING_STRATEGIES,
    Budget,
    Integer,
    OptimizerSettings,
    Real,
    Spec,
    SpecError,
    parse_spec,
)
from tests.fake_trial import objective, succeeded

PARALLEL = 6


def study(
    spec: Spec, trials: int, parallel: int, scale: float = 1.0
) -> list[tuple[int, Params, list[Params]]]:
    """The Study's loop on the fake objective (times ``scale``): every (index, point, points in
    flight when asked)."""
    finished: list[TrialResult] = []
    running: list[tuple[int, Params]] = []
    asked = []
    while len(finished) < trials:
        while len(running) < parallel and len(finished) + len(running) < trials:
            index = len(finished) + len(running)
            pending = [p for _, p in running]
            point = optimizer.suggest(spec, index, finished, pending)
            asked.append((index, point, pending))
            running.append((index, point))
        index, point = running.pop(0)
        finished.append(succeeded(index, point, "val_accuracy", scale * objective(point)))
    return asked


def spec_for(**settings: object) -> Spec:
    return Spec(optimizer=OptimizerSettings(n_initial_points=4, **settings), budget=Budget(max_trials=20))  # type: ignore[arg-type]


def test_every_estimator_the_spec_accepts_has_a_strategy() -> None:
    assert set(search.SUGGESTERS) == set(BASE_ESTIMATORS)


@pytest.mark.parametrize(
    ("estimator", "pending"), [("GP", "kriging_believer"), ("GP", "cl_mean"), ("RF", "kriging_believer")]
)
def test_no_two_trials_in_flight_share_a_point(estimator: str, pending: str) -> None:
    asked = study(spec_for(base_estimator=estimator, pending=pending), 20, PARALLEL)
    assert len(asked) == 20
    for _, point, in_flight in asked:
        assert point not in in_flight


def test_a_space_smaller_than_the_trials_in_flight_still_gets_new_points_first() -> None:
    # 3 x 2 = 6 points: five trials in flight leave exactly one free point.
    spec = Spec(
        space=(Integer("num_dense_layers", 1, 3), Integer("num_dense_nodes", 5, 6)),
        x0=(),
        optimizer=OptimizerSettings(n_initial_points=1),
    )
    finished = [succeeded(0, {"num_dense_layers": 1, "num_dense_nodes": 5}, "val_accuracy", 0.5)]
    in_flight: list[Params] = [
        {"num_dense_layers": a, "num_dense_nodes": b} for a, b in [(1, 5), (1, 6), (2, 5), (2, 6), (3, 5)]
    ]
    assert optimizer.suggest(spec, 6, finished, in_flight) == {"num_dense_layers": 3, "num_dense_nodes": 6}


def test_x0_is_not_counted_in_the_initial_design() -> None:
    """As gp_minimize: x0, then n_initial_points random points, then the model."""
    spec = spec_for()  # the notebook's x0 and 4 initial points
    asked = study(spec, 8, 1)
    assert asked[0][1] == dict(spec.x0[0])
    finished = [succeeded(i, p, "val_accuracy", objective(p)) for i, p, _ in asked]
    flipped = [succeeded(r.index, r.params, "val_accuracy", -(r.objective_value or 0.0)) for r in finished]
    # The design does not look at the results; the model, from trial 1 + 4 on, does.
    for index in range(1, 5):
        assert optimizer.suggest(spec, index, flipped[:index], []) == asked[index][1]
    assert len({str(p) for _, p, _ in asked[:5]}) == 5
    assert optimizer.suggest(spec, 5, flipped[:5], []) != asked[5][1]


def latin(design: list[Params], name: str, low: float, high: float) -> bool:
    """Whether ``design`` puts one point in each of len(design) equal slices of [low, high] in ``name``."""
    n = len(design)
    slices = (min(int((float(p[name]) - low) / (high - low) * n), n - 1) for p in design)
    return sorted(slices) == list(range(n))


def test_the_largest_latin_hypercube_is_drawn_once_without_scoring_every_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """skopt keeps the most spread out of 1,000 latin hypercubes, each scored by all its pairwise
    distances: some 13 minutes at DESIGN_MAX points, where the design scores none, and a study
    draws it once, not on every ask."""
    settings = OptimizerSettings(n_initial_points=DESIGN_MAX, initial_point_generator="lhs")
    spec = Spec(space=(Real("a", 0.0, 1.0), Real("b", 0.0, 1.0)), x0=(), optimizer=settings)
    drawn: list[str] = []

    def counted(generator: str, **settings: object) -> object:
        drawn.append(generator)
        return cook_initial_point_generator(generator, **settings)

    monkeypatch.setattr(optimizer, "cook_initial_point_generator", counted)
    optimizer._design.cache_clear()
    last = optimizer.suggest(spec, DESIGN_MAX - 1, [], [])
    design = [optimizer.suggest(spec, i, [], []) for i in range(DESIGN_MAX - 1)] + [last]
    assert latin(design, "a", 0.0, 1.0) and latin(design, "b", 0.0, 1.0)
    assert drawn == ["lhs"]
    unscored = Lhs(criterion=None).generate([SkReal(0.0, 1.0), SkReal(0.0, 1.0)], DESIGN_MAX, 0)
    assert [[p["a"], p["b"]] for p in design] == [[float(v) for v in row] for row in unscored]


@pytest.mark.parametrize("estimator", ["GP", "ET"])
def test_replay_asks_the_same_points(estimator: str) -> None:
    """A restarted controller (nothing cached) asks each trial's point from the records alone."""
    spec = spec_for(base_estimator=estimator)
    first = study(spec, 16, 4)
    gp.fitted_gp.cache_clear()
    optimizer._design.cache_clear()
    assert study(spec, 16, 4) == first
    # And one ask alone, cold, from the history an uninterrupted study had at that moment.
    index, point, in_flight = first[-1]
    finished = [
        succeeded(i, p, "val_accuracy", objective(p)) for i, p, _ in first[:index] if p not in in_flight
    ]
    gp.fitted_gp.cache_clear()
    assert optimizer.suggest(spec, index, finished, in_flight) == point


@pytest.mark.parametrize(("estimator", "trust_region"), [("GP", "auto"), ("GP", "none"), ("RF", "auto")])
def test_the_metric_s_units_change_no_point_asked(estimator: str, trust_region: str) -> None:
    """The same study with its metric in other units (by powers of two, which scale exactly) asks
    the very same points: no margin or tolerance in the metric's own units."""
    spec = spec_for(base_estimator=estimator, trust_region=trust_region)
    asked = study(spec, 14, 2)
    for scale in (2.0**-7, 2.0**7):
        gp.fitted_gp.cache_clear()
        assert study(spec, 14, 2, scale) == asked


@pytest.mark.parametrize(("warp", "per_ask"), [("none", 1), ("auto", 2)])  # auto: the losses, their warping
def test_a_wave_of_suggestions_fits_each_gp_once(warp: str, per_ask: int) -> None:
    spec = spec_for(warp=warp)
    finished = [succeeded(i, p, "val_accuracy", objective(p)) for i, p, _ in study(spec, 8, 1)]
    gp.fitted_gp.cache_clear()
    pending: list[Params] = []
    for index in range(8, 8 + PARALLEL):  # six trials finished at once: six asks, one history
        pending.append(optimizer.suggest(spec, index, finished, pending))
    info = gp.fitted_gp.cache_info()
    # The free fits once; the asks take turns, within the trust region and over the whole space,
    # where the prior's fit to the same values is offered too: once more, for the wave's three.
    assert (info.misses, info.hits + info.misses) == (per_ask + 1, PARALLEL * per_ask + PARALLEL // 2)


def test_the_kernel_is_fitted_on_a_subset_past_fit_max() -> None:
    n = gp.FIT_MAX + 50
    xs = [[float(i)] for i in range(n)]
    ys = [float((i * 37) % n) for i in range(n)]  # a permutation: the best are spread over the history
    kept_x, kept_y = gp.fit_subset(xs, ys)
    assert len(kept_x) == gp.FIT_MAX
    assert sorted(kept_y)[: gp.FIT_MAX // 2] == sorted(ys)[: gp.FIT_MAX // 2]
    assert [xs.index(x) for x in kept_x] == sorted(xs.index(x) for x in kept_x)  # trial order kept


def test_suggest_handles_a_space_of_reals_with_pending_trials() -> None:
    spec = Spec(space=(Real("learning_rate", 1e-4, 1e-1, "log-uniform"),), x0=(),
                optimizer=OptimizerSettings(n_initial_points=2))  # fmt: skip
    asked = study(spec, 8, 3)
    assert all(1e-4 <= float(p["learning_rate"]) <= 1e-1 for _, p, _ in asked)


def test_a_heavy_tail_is_fitted_warped_and_a_gaussian_spread_as_it_is() -> None:
    """The evidence decides: a few losses far above the rest pick the warping, a bowl's do not."""
    spec = Spec(space=(Real("a", 0.0, 1.0), Real("b", 0.0, 1.0)), x0=(), optimizer=OptimizerSettings())
    xs = [[(i * 0.618) % 1.0, (i * 0.382 + 0.1) % 1.0] for i in range(24)]
    bowl = [(a - 0.3) ** 2 + (b - 0.6) ** 2 for a, b in xs]
    cliff = [v + (1e4 if a > 0.8 else 0.0) for v, (a, _) in zip(bowl, xs, strict=True)]  # diverged trials
    _, told = gp.model(spec, xs, cliff)
    assert told != cliff
    assert sorted(range(24), key=told.__getitem__) == sorted(range(24), key=cliff.__getitem__)
    assert gp.model(spec, xs, bowl)[1] == bowl
    unwarped = Spec(space=spec.space, x0=(), optimizer=OptimizerSettings(warp="none"))
    assert gp.model(unwarped, xs, cliff)[1] == cliff


def test_the_gp_tells_running_trials_as_the_pending_setting_says() -> None:
    """One trial in flight, at the point asked with none: the belief told about it moves the next point."""
    spec = spec_for()
    finished = [succeeded(i, p, "val_accuracy", objective(p)) for i, p, _ in study(spec, 8, 1)]
    in_flight = [optimizer.suggest(spec, 8, finished, [])]
    asked = {s: optimizer.suggest(with_pending(spec, s), 8, finished, in_flight) for s in PENDING_STRATEGIES}
    assert asked["kriging_believer"] != asked["cl_mean"]


@pytest.mark.parametrize("estimator", ["RF", "ET", "GBRT"])
def test_trees_tell_running_trials_as_the_pending_setting_says(estimator: str) -> None:
    """The ensemble's own mean there (kriging believer) or the mean loss (cl_mean), never the best loss."""
    spec = spec_for(base_estimator=estimator)
    finished = [succeeded(i, p, "val_accuracy", objective(p)) for i, p, _ in study(spec, 10, 1)]
    in_flight = [p for _, p, _ in study(spec_for(random_state=7), 3, 3)]
    told = {}
    for strategy in PENDING_STRATEGIES:
        suggester = trees.TreeSuggester(with_pending(spec, strategy), 0)
        suggester.tell(finished)
        xs, ys = suggester.training(in_flight)
        assert xs[-3:] == [[p[d.name] for d in spec.space] for p in in_flight]
        told[strategy] = ys[-3:]
    losses = ys[:-3]
    assert told["cl_mean"] == [pytest.approx(np.mean(losses))] * 3
    believed = told["kriging_believer"]
    assert len(set(believed)) > 1 and min(losses) < min(believed) and max(believed) < max(losses)
    assert optimizer.suggest(spec, 10, finished, in_flight) not in in_flight


def with_pending(spec: Spec, strategy: str) -> Spec:
    return replace(spec, optimizer=replace(spec.optimizer, pending=strategy))


def test_trees_are_fitted_to_a_heavy_tail_warped_when_it_is_significant() -> None:
    bowl = [((i * 0.618) % 1.0 - 0.3) ** 2 for i in range(24)]
    cliff = [v + (1e4 if i % 7 == 0 else 0.0) for i, v in enumerate(bowl)]  # diverged trials
    told = trees.targets(cliff, "auto")
    assert told != cliff
    assert sorted(range(24), key=told.__getitem__) == sorted(range(24), key=cliff.__getitem__)
    normal = list(np.random.default_rng(0).normal(size=40))
    assert trees.targets(normal, "auto") == normal  # a warping gains nothing significant on Gaussian losses
    assert trees.targets(cliff, "none") == cliff
    warped = warping.yeo_johnson(cliff)
    assert warped is not None and warping.significant(warped)


def test_the_kernel_fit_s_routine_warnings_never_reach_stderr() -> None:
    """Filtered for the process, not per call: the report's plots fit a GP in another thread."""
    spec = Spec(space=(Real("a", 0.0, 1.0),), x0=(), optimizer=OptimizerSettings(n_initial_points=0))
    xs = [[i / 7] for i in range(8)]
    gp.fitted_gp.cache_clear()
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are, recording what passes
        optimizer.suggest(
            spec, 8, [succeeded(i, {"a": x}, "val_accuracy", 2.0 * x) for i, (x,) in enumerate(xs)], []
        )
    assert [w.category for w in caught] == []


def test_spec_names_the_warp_field() -> None:
    assert parse_spec("optimizer: {warp: none}").optimizer.warp == "none"
    with pytest.raises(SpecError, match=r"^optimizer\.warp: must be one of auto, none; got 'log'$"):
        parse_spec("optimizer: {warp: log}")


def test_spec_names_the_pending_strategy_field() -> None:
    assert parse_spec("optimizer: {pending: cl_mean}").optimizer.pending == "cl_mean"
    with pytest.raises(SpecError, match=r"^optimizer\.pending: must be one of kriging_believer, "):
        parse_spec("optimizer: {pending: believe}")
