"""Pareto dominance on loss vectors (lower is better in every coordinate): fronts and hypervolume.

Pure: tuples of floats in, indices and volumes out. The views and the
benchmark use it; what a trial's losses are is controller.objectives'.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def front(points: Sequence[Point]) -> list[int]:
    """The indices of the points no other point dominates, in input order (equal points all stay)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


def sort(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the front, then the front of what is left, and so on (indices)."""
    left = list(range(len(points)))
    layers = []
    while left:
        layer = [left[i] for i in front([points[j] for j in left])]
        layers.append(layer)
        left = [i for i in left if i not in layer]
    return layers


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume the points dominate up to ``reference``, exactly; points not below it in every
    coordinate add nothing.

    In 2-D, the staircase's area, one sweep after a sort; beyond, sliced
    along the last coordinate, each slab's cross-section being the
    hypervolume of the points below it in one dimension fewer: simple, and
    exponential in the dimension, which the few objectives of a study allow.
    """
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    return _volume([inside[i] for i in front(inside)], tuple(reference))


def _volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    if len(reference) == 2:
        return _area(points, reference)
    ordered = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(ordered):
        upper = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        if upper > p[-1]:
            total += (upper - p[-1]) * _volume([q[:-1] for q in ordered[: i + 1]], reference[:-1])
    return total


def _area(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """The 2-D staircase under ``reference``: sorted by the first coordinate, each point adds the
    strip between it and the next, as high as the lowest second coordinate seen so far."""
    ordered = sorted(points)
    total, low = 0.0, reference[1]
    for i, (x, y) in enumerate(ordered):
        low = min(low, y)
        right = ordered[i + 1][0] if i + 1 < len(ordered) else reference[0]
        total += (right - x) * (reference[1] - low)
    return total
