"""A trust region around the best trial (TuRBO, Eriksson et al. 2019), replayed from the history.

EI over the whole space spends a short study at the edges: the GP's
variance is largest there, and on a landscape it cannot yet explain (many
local minima, a curved valley, ten dimensions) 14-32 % of the coordinates
it asked lay within 1 % of a bound (BENCHMARKS.md section 14). Every other
model-based ask therefore looks only inside a box around the best trial: its
side starts at 0.8 of the normalised space, halves after ``max(4, d)``
trials in a row that did not improve on the best, doubles after 3 that did
(at most 1.6), and starts over once it falls below 0.5^7, as TuRBO-1's does.
Each numeric dimension's half of the box is scaled by the GP's length scale
there, relative to their geometric mean; categoricals stay free.

TuRBO keeps the side as state; here it is replayed from the finished losses
in trial order, so a study resumed after a kill draws the same box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger
from skopt.space import Real as SkReal
from skopt.space import Space

START, LONGEST, SHORTEST = 0.8, 1.6, 0.5**7
SUCCESSES = 3  # improvements in a row that double the side
IMPROVEMENT = 1e-3  # relative to the best loss: smaller gains count as failures (TuRBO's)


def side(losses: Sequence[float], design: int, numeric: int) -> float:
    """The box's side after the losses in trial order; the first ``design`` only set the best."""
    length, best, failures, successes = START, math.inf, 0, 0
    patience = max(4, numeric)
    for i, loss in enumerate(losses):
        if i >= design:
            improved = loss < best - IMPROVEMENT * abs(best)
            failures, successes = (0, successes + 1) if improved else (failures + 1, 0)
            if failures >= patience:
                length, failures = length / 2, 0
            if successes >= SUCCESSES:
                length, successes = min(2 * length, LONGEST), 0
            if length < SHORTEST:
                length = START
        best = min(best, loss)
    return length


def box(
    dims: Sequence[SkDimension], unit: Space, center: Sequence[Any], length: float, scales: np.ndarray
) -> Space:
    """The dimensions narrowed to the box of side ``length`` around ``center``.

    ``unit``: the same dimensions normalised to [0, 1] (the model's view);
    ``scales``: one relative length scale per dimension (ignored for a
    categorical, which keeps all its values). Integers keep at least two values.
    """
    narrowed: list[SkDimension] = []
    for d, u, c, s in zip(dims, unit.dimensions, center, scales, strict=True):
        if isinstance(d, SkCategorical):
            narrowed.append(d)
            continue
        mid, half = float(u.transform([c])[0]), length * float(s) / 2
        lo, hi = (u.inverse_transform([v])[0] for v in (max(0.0, mid - half), min(1.0, mid + half)))
        if isinstance(d, SkInteger):
            a, b = math.ceil(lo), math.floor(hi)
            a, b = (max(d.low, a - 1), min(d.high, b + 1)) if a >= b else (a, b)
            narrowed.append(SkInteger(a, b, name=d.name))
        else:
            narrowed.append(SkReal(float(lo), max(float(hi), float(lo) + 1e-12), prior=d.prior, name=d.name))
    return Space(narrowed)


def relative_scales(length_scales: np.ndarray, unit: Space) -> np.ndarray:
    """Each dimension's length scale over the numeric ones' geometric mean (1 for a categorical).

    ``length_scales``: the kernel's, one per column of the model's input
    (a categorical's one-hot columns included).
    """
    ends = np.cumsum([d.transformed_size for d in unit.dimensions])
    columns = [int(e) - 1 for e in ends]
    numeric = [not isinstance(d, SkCategorical) for d in unit.dimensions]
    own = np.array([length_scales[c] if n else np.nan for c, n in zip(columns, numeric, strict=True)])
    mean = math.exp(float(np.nanmean(np.log(own))))
    return np.where(numeric, own / mean, 1.0)
