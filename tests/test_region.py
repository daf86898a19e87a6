"""The trust region (kubetune/controller/search/region.py): its side replayed from the losses, its
box around the best trial, and the GP's asks that keep to it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger
from skopt.space import Real as SkReal
from skopt.space import Space
from skopt.utils import normalize_dimensions

from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer
from kubetune.controller.gp import FastGP, LongScalePriorGP, PriorGP, loo_log_density
from kubetune.controller.search import MultiSuggester, gp, region
from kubetune.controller.search.base import standardized
from kubetune.spec import (
    Budget,
    Categorical,
    Dimension,
    Integer,
    Objective,
    OptimizerSettings,
    Real,
    Spec,
    SpecError,
    parse_spec,
)
from tests.fake_trial import succeeded

DESIGN = 4


def test_the_side_starts_at_its_start_and_the_design_only_sets_the_best() -> None:
    assert region.side([], DESIGN, 2) == region.START
    assert region.side([5.0, 4.0, 3.0, 2.0], DESIGN, 2) == region.START


def test_the_side_halves_after_as_many_failures_as_dimensions_and_at_least_four() -> None:
    design = [1.0] * DESIGN
    assert region.side(design + [2.0] * 3, DESIGN, 2) == region.START
    assert region.side(design + [2.0] * 4, DESIGN, 2) == region.START / 2
    assert region.side(design + [2.0] * 5, DESIGN, 6) == region.START
    assert region.side(design + [2.0] * 12, DESIGN, 6) == region.START / 4


def test_the_side_doubles_after_three_improvements_up_to_its_longest() -> None:
    improving = [10.0] * DESIGN + [9.0, 8.0, 7.0]
    assert region.side(improving, DESIGN, 2) == 2 * region.START
    assert region.side([*improving, 6.0, 5.0, 4.0], DESIGN, 2) == region.LONGEST


def test_a_gain_too_small_to_count_is_a_failure() -> None:
    tiny = [100.0] * DESIGN + [100.0 * (1 - region.IMPROVEMENT / 2)] * 4
    assert region.side(tiny, DESIGN, 2) == region.START / 2


def test_the_side_starts_over_once_it_is_shortest() -> None:
    halvings = math.ceil(math.log2(region.START / region.SHORTEST))
    stuck = [1.0] * DESIGN + [2.0] * (4 * halvings)
    assert region.side(stuck, DESIGN, 2) == region.START
    assert region.side(stuck[:-4], DESIGN, 2) == region.START / 2 ** (halvings - 1)


def _unit(dims: list[SkDimension]) -> Space:
    return Space(normalize_dimensions(dims))


def test_the_box_is_centred_on_the_best_and_clipped_to_the_space() -> None:
    dims = [SkReal(0.0, 10.0), SkReal(0.0, 10.0)]
    narrowed = region.box(dims, _unit(dims), [5.0, 9.0], 0.4, np.ones(2))
    assert np.ravel(narrowed.bounds).tolist() == pytest.approx([3.0, 7.0, 7.0, 10.0])


def test_the_box_is_stretched_by_the_relative_length_scales() -> None:
    dims = [SkReal(0.0, 10.0), SkReal(0.0, 10.0)]
    narrowed = region.box(dims, _unit(dims), [5.0, 5.0], 0.4, np.array([2.0, 0.5]))
    assert np.ravel(narrowed.bounds).tolist() == pytest.approx([1.0, 9.0, 4.0, 6.0])


def test_a_log_scaled_dimension_is_narrowed_in_its_logarithm() -> None:
    dims = [SkReal(1e-6, 1.0, prior="log-uniform")]
    narrowed = region.box(dims, _unit(dims), [1e-3], 1 / 3, np.ones(1))
    assert [math.log10(v) for v in narrowed.bounds[0]] == pytest.approx([-4.0, -2.0])
    assert narrowed.dimensions[0].prior == "log-uniform"


def test_an_integer_keeps_two_values_and_a_categorical_all_of_its_own() -> None:
    dims = [SkInteger(0, 100), SkCategorical(["a", "b", "c"])]
    narrowed = region.box(dims, _unit(dims), [50, "b"], 0.001, np.ones(2))
    assert narrowed.bounds[0] == (49, 51)
    assert narrowed.dimensions[1].categories == ("a", "b", "c")


def test_each_dimension_reads_its_own_length_scale_past_a_categorical_s_columns() -> None:
    dims = [SkReal(0.0, 1.0), SkCategorical(["a", "b", "c"]), SkReal(0.0, 1.0)]
    unit = _unit(dims)
    scales = region.relative_scales(np.array([4.0, 7.0, 7.0, 7.0, 1.0]), unit)
    assert scales.tolist() == [pytest.approx(2.0), 1.0, pytest.approx(0.5)]


# --- the GP's asks ------------------------------------------------------------------


def _spec(
    trust_region: str = "auto", space: tuple[Dimension, ...] = (Real("a", 0.0, 1.0), Real("b", 0.0, 1.0))
) -> Spec:
    return Spec(
        space=space,
        x0=(),
        optimizer=OptimizerSettings(n_initial_points=DESIGN, trust_region=trust_region),
        budget=Budget(max_trials=40),
    )


def _history(spec: Spec, n: int) -> list[TrialResult]:
    """n trials of the study on a bowl (its optimum at (0.7, 0.2)), asked by suggest itself."""
    finished: list[TrialResult] = []
    for i in range(n):
        p = optimizer.suggest(spec, i, finished, [])
        a, b = float(p["a"]), float(p["b"])
        finished.append(succeeded(i, p, "val_accuracy", -((a - 0.7) ** 2 + (b - 0.2) ** 2)))
    return finished


def _suggester(spec: Spec, finished: list[TrialResult]) -> tuple[gp.GPSuggester, Any]:
    suggester = gp.GPSuggester(spec, 7)
    suggester.tell(finished)
    xs = [[p[d.name] for d in spec.space] for p, _ in suggester.observed]
    fitted, _ = gp.model(spec, xs, [loss for _, loss in suggester.observed], suggester.fits(len(xs)))
    return suggester, fitted  # the model ask() fits for this many trials told, none running


def test_an_even_count_of_trials_told_asks_within_the_region_around_the_best() -> None:
    spec = _spec()
    suggester, fitted = _suggester(spec, _history(spec, 12))
    local = suggester.region(fitted)
    assert local is not None
    best = min(suggester.observed, key=lambda o: o[1])[0]
    assert all(low <= best[d] <= high for d, (low, high) in zip("ab", local.bounds, strict=True))
    assert any(high - low < 1.0 for low, high in local.bounds)
    asked = suggester.ask([])
    assert all(low <= asked[d] <= high for d, (low, high) in zip("ab", local.bounds, strict=True))


def test_an_odd_count_asks_over_the_whole_space_on_the_model_offered_the_whole_prior() -> None:
    history = _history(_spec(), 13)
    turns, fitted = _suggester(_spec(), history)
    assert turns.region(fitted) is not None
    xs = [[p[d.name] for d in turns.spec.space] for p, _ in turns.observed]
    chosen, ys = gp.model(turns.spec, xs, [loss for _, loss in turns.observed], ("long", "whole"))
    assert turns.ask([]) == turns.anywhere(chosen, xs, standardized(ys))  # as choose() hands them on
    everywhere, plain = _suggester(_spec("none"), history)
    assert everywhere.region(plain) is None and type(plain) is FastGP  # none: gp_minimize's model


def test_the_whole_prior_s_fit_is_kept_where_it_predicts_the_trials_better() -> None:
    spec = _spec()
    history, kept = _history(spec, 17), set()
    for told in (3, 5, 9, 13):  # the long half wins on 3 trials here, the whole prior from 5 on
        suggester, _ = _suggester(spec, history[:told])
        xs = [[p[d.name] for d in spec.space] for p, _ in suggester.observed]
        losses = [loss for _, loss in suggester.observed]
        chosen, ys = gp.model(spec, xs, losses, ("long", "whole"))
        half, values = gp.model(spec, xs, losses, ("long",))
        assert ys == values  # the same values, refitted with the whole prior
        key = (spec.space, spec.optimizer.random_state, tuple(map(tuple, xs)), tuple(ys))
        held = gp.fitted_gp(*key, "whole")
        assert isinstance(held, PriorGP) and isinstance(half, LongScalePriorGP)
        assert chosen is (held if loo_log_density(held) > loo_log_density(half) else half)
        kept.add(type(chosen))
    assert kept == {PriorGP, LongScalePriorGP}


def test_the_whole_prior_is_fitted_for_the_whole_space_turns_alone(prior_fits: list[tuple[str, ...]]) -> None:
    history = _history(_spec(), 13)
    prior_fits.clear()  # the asks that made the history
    running: Params = {"a": 0.5, "b": 0.5}  # a running trial counts toward the turn
    for spec, told, pending in [(_spec(), 13, []), (_spec(), 12, []), (_spec(), 12, [running]),
                                (_spec("none"), 13, [])]:  # fmt: skip
        suggester = gp.GPSuggester(spec, 7)
        suggester.tell(history[:told])
        suggester.ask(pending)
    turns = [("long", "whole"), ("long",), ("long", "whole"), ("none",)]  # none: gp_minimize's model
    assert prior_fits == turns


def test_an_all_categorical_space_has_no_region() -> None:
    spec = _spec(space=(Categorical("c", ("x", "y", "z")), Categorical("d", ("u", "v"))))
    told = [succeeded(i, {"c": c, "d": "u"}, "val_accuracy", float(i)) for i, c in enumerate("xyz")]
    suggester, fitted = _suggester(spec, told)
    assert suggester.region(fitted) is None


def test_several_objectives_search_the_whole_space() -> None:
    spec = Spec(
        space=(Real("a", 0.0, 1.0), Integer("n", 1, 9)),
        x0=(),
        objectives=(Objective("val_accuracy", "maximize"), Objective("param_count", "minimize")),
    )
    suggester = MultiSuggester(spec, 7)
    assert suggester.region(gp.fitted_gp(spec.space, 0, ((0.5, 3), (0.2, 7)), (1.0, 2.0))) is None


def test_spec_names_the_trust_region_field() -> None:
    assert parse_spec("optimizer: {trust_region: none}").optimizer.trust_region == "none"
    with pytest.raises(SpecError, match=r"^optimizer\.trust_region: must be one of auto, none; got 'local'$"):
        parse_spec("optimizer: {trust_region: local}")
