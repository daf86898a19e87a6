"""Each discrete coordinate of an ask moved to the acquisition's best value, one at a time.

skopt's whole-space ask polishes its best candidates by L-BFGS in the model's
relaxed view of the space, where an integer is a real in [0, 1] and a
categorical a one-hot vector, and then rounds them: the point asked need not
be the acquisition's best on the grid. ``sweep`` sets each integer and
categorical in turn to the value the acquisition scores best, the other
coordinates held, until a pass moves none, as Optuna's GP sampler searches
its discrete parameters. On levy4_int, whose two integers hold local minima
far worse on either side, the median regret after 30 trials fell from 3.25
to 2.46 over 50 seeds (BENCHMARKS.md section 14). A space with no discrete
coordinate is asked what it was before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from skopt.space import Categorical as SkCategorical
from skopt.space import Dimension as SkDimension
from skopt.space import Integer as SkInteger

PASSES = 3  # a pass rarely leaves a coordinate to move: the sweep settles in one or two
# An integer's values scored in a pass: evenly spaced past this many, its current value kept.
# A whole-space ask at 1,000 trials scores 2,000 candidates; a sweep adds at most this per pass
# and dimension.
MAX_VALUES = 256

Score = Callable[[list[list[Any]]], np.ndarray]  # the acquisition at rows of points, lower is better


def sweep(dims: Sequence[SkDimension], x: Sequence[Any], score: Score) -> list[Any]:
    """``x`` with each discrete coordinate moved, in turn, to its value that ``score`` ranks best
    (lowest) with the others held; a tie keeps the value it had."""
    x = list(x)
    for _ in range(PASSES):
        moved = False
        for i, d in enumerate(dims):
            values = choices(d, x[i])
            if not values:
                continue
            scores = score([[*x[:i], v, *x[i + 1 :]] for v in values])
            best = int(np.argmin(scores))
            if scores[best] < scores[values.index(x[i])]:
                x[i], moved = values[best], True
        if not moved:
            break
    return x


def choices(d: SkDimension, current: Any) -> list[Any]:
    """The values of a discrete dimension that a pass scores, ``current`` among them; none for a real."""
    if isinstance(d, SkCategorical):
        return list(d.categories)
    if not isinstance(d, SkInteger):
        return []
    if d.high - d.low < MAX_VALUES:
        return list(range(d.low, d.high + 1))
    spaced = np.linspace(d.low, d.high, MAX_VALUES).round().astype(int).tolist()
    return sorted({*spaced, int(current)})
