"""kubetune's search space as skopt sees it, and skopt's rows back as JSON-ready points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger
from skopt.space import Real as SkReal
from skopt.space import Space
from skopt.utils import normalize_dimensions

from kubetune.contract import Params, ParamValue
from kubetune.spec import Dimension, Integer, Real, Spec


def skopt_dimensions(spec: Spec) -> list[SkDimension]:
    return [skopt_dimension(d) for d in spec.space]


def skopt_dimension(d: Dimension) -> SkDimension:
    if isinstance(d, Real):
        return SkReal(d.low, d.high, prior=d.prior, name=d.name)
    if isinstance(d, Integer):
        return SkInteger(d.low, d.high, name=d.name)
    return SkCategorical(list(d.values), name=d.name)


def normalized(dims: tuple[Dimension, ...]) -> Space:
    """The space a model sees: every dimension mapped onto [0, 1] (categoricals one-hot)."""
    return Space(normalize_dimensions([skopt_dimension(d) for d in dims]))


def row(spec: Spec, params: Params) -> list[Any]:
    return [params[d.name] for d in spec.space]


def point(spec: Spec, values: Sequence[Any]) -> Params:
    """A skopt row as JSON-ready Python values (skopt hands out numpy scalars)."""
    return {d.name: _plain(d, v) for d, v in zip(spec.space, values, strict=True)}


def _plain(d: Dimension, v: Any) -> ParamValue:
    if isinstance(d, Real):
        return float(v)
    if isinstance(d, Integer):
        return int(v)
    return v.item() if isinstance(v, np.generic) else v  # type: ignore[no-any-return]
