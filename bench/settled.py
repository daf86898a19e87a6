"""Goal verdicts that a section's seeds leave to chance, judged again on more seeds.

Sections 14 and 15 judge issue 26's goals on 20 and 10 seeds, and say how
often a bootstrap of those seeds would flip each verdict (bench/search.py,
``beyond``). Where that is far from 0 and 100 %, the seeds, not the methods,
decide it: run with seeds 20-39 and 40-59, kubetune p1's verdict against
TPE on ellipsoid_rot6 came out no, yes, yes, and on ackley5 yes, no, yes.
So every verdict the bootstrap flips in at least OPEN of its draws, whether
it reads yes or no, is judged again on SEEDS seeds, the section's own among
them; the goals' other verdicts stand. Only the two methods a verdict
compares run the extra seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from bench.common import Section, table
from bench.kept_runs import KeptRuns
from bench.search import BUDGET, GoalRow, Verdict, ahead, no_worse, regrets, run_cells, short
from bench.search_cnn import Surrogate
from bench.search_problems import Problem

SEEDS = 60
OPEN = 0.1  # a verdict flipped by between 10 and 90 % of the bootstrap's draws is left to the seeds


class Goal(NamedTuple):
    """One goal's verdict on a problem: kubetune p1 no worse than a rival's upper quartile after
    BUDGET trials, or kubetune p8 ahead of random after ``trials``."""

    problem: str
    ours: str
    theirs: str
    trials: int

    @property
    def sequential(self) -> bool:
        """Parallel 1's goal (against a rival's upper quartile), not parallel 8's (against random)."""
        return self.ours == "kubetune p1"

    def judge(self, problem: Problem, runs: dict[str, list[list[float]]]) -> Verdict:
        ours, theirs = runs[self.ours], runs[self.theirs]
        if self.sequential:
            return no_worse(problem, ours, theirs)
        return ahead(problem, ours, theirs, self.trials)

    def medians(self, problem: Problem, runs: dict[str, list[list[float]]]) -> str:
        """What the verdict compares: our median against their upper quartile (p1) or median (p8)."""
        a, b = (regrets(problem, runs[m], self.trials) for m in (self.ours, self.theirs))
        q = 75 if self.sequential else 50
        return f"{short(float(np.median(a)))} against {short(float(np.percentile(b, q)))}"

    def __str__(self) -> str:
        if self.sequential:
            return f"p1 no worse than {self.theirs}'s upper quartile"
        return f"p8 ahead of random after {self.trials}"


def open_goals(
    versus_rows: Sequence[GoalRow], goal_rows: Sequence[GoalRow], rivals: Sequence[str], longer: int
) -> list[Goal]:
    """The verdicts the section's summary counts (p1 against each rival; p8 against random after
    ``longer`` trials) that the seeds leave open."""
    found = [
        (Goal(row.problem, "kubetune p1", rival, BUDGET), v)
        for row in versus_rows
        for rival, v in zip(rivals, row.verdicts, strict=True)
    ]
    found += [(Goal(row.problem, "kubetune p8", "random", longer), row.verdicts[-1]) for row in goal_rows]
    return [goal for goal, v in found if OPEN <= v.against <= 1 - OPEN]


def needed(goals: Sequence[Goal]) -> dict[str, list[str]]:
    """Per problem, the methods whose extra seeds the open goals need."""
    methods: dict[str, set[str]] = {}
    for g in goals:
        methods.setdefault(g.problem, set()).update((g.ours, g.theirs))
    return {p: sorted(ms) for p, ms in methods.items()}


def more_seeds(
    left_open: Sequence[Goal],
    budget: int,
    cnn: Surrogate | None,
    more: Callable[[], dict[str, Problem]],
    workers: int,
    kept: Sequence[KeptRuns],
) -> dict[str, dict[str, list[list[float]]]]:
    """The runs the open goals compare, on SEEDS seeds (their first ones kept from the section's)."""
    return {
        p: run_cells([p], ms, SEEDS, budget, cnn, more, workers, kept)[p]
        for p, ms in needed(left_open).items()
    }


def settled_table(
    goals: Sequence[Goal],
    found: dict[str, Problem],
    main: dict[str, dict[str, list[list[float]]]],
    extra: dict[str, dict[str, list[list[float]]]],
    judged: dict[Goal, Verdict],
) -> str:
    """Each open goal on the section's seeds and on SEEDS (there as ``judged``)."""
    rows = []
    for g in goals:
        p = found[g.problem]
        few, many = main[g.problem], extra[g.problem]
        rows.append([g.problem, str(g), f"{g.medians(p, few)}: {g.judge(p, few)}",
                     f"{g.medians(p, many)}: {judged[g]}"])  # fmt: skip
    seeds = len(next(iter(main.values()))["kubetune p1"])
    return table(["problem", "goal", f"{seeds} seeds", f"{SEEDS} seeds"], rows)


def verdicts(
    goals: Sequence[Goal], found: dict[str, Problem], extra: dict[str, dict[str, list[list[float]]]]
) -> dict[Goal, Verdict]:
    """The open goals' verdicts on SEEDS seeds."""
    return {g: g.judge(found[g.problem], extra[g.problem]) for g in goals}


def p1_holds(rows: Sequence[GoalRow], rivals: Sequence[str], judged: dict[Goal, Verdict]) -> list[str]:
    """The problems where parallel 1 is no worse than every rival, the open verdicts as ``judged``."""
    return [
        r.problem
        for r in rows
        if all(
            judged.get(Goal(r.problem, "kubetune p1", m, BUDGET), v).holds
            for m, v in zip(rivals, r.verdicts, strict=True)
        )
    ]


def p8_holds(rows: Sequence[GoalRow], longer: int, judged: dict[Goal, Verdict]) -> list[str]:
    """The problems where parallel 8 is ahead of random after ``longer`` trials, the open verdicts
    as ``judged``."""
    return [
        r.problem
        for r in rows
        if judged.get(Goal(r.problem, "kubetune p8", "random", longer), r.verdicts[-1]).holds
    ]


def report(
    s: Section,
    left_open: list[Goal],
    found: dict[str, Problem],
    main: dict[str, dict[str, list[list[float]]]],
    extra: dict[str, dict[str, list[list[float]]]],
    rows: tuple[list[GoalRow], list[GoalRow]],
    rivals: Sequence[str],
    longer: int,
) -> None:
    """The open verdicts on more seeds, and the goals' counts with them."""
    s.add(
        f"**Verdicts the seeds leave open, judged on {SEEDS} seeds** (bench/settled.py): each "
        f"verdict above that the bootstrap flips in {OPEN:.0%} to {1 - OPEN:.0%} of its "
        f"draws, yes or no, judged again on seeds 0-{SEEDS - 1} of the two methods it compares; "
        "the other verdicts stand. Our median against the rival's upper quartile (p1) or random's median "
        "(p8); in brackets, as above, how often a bootstrap of those seeds says no."
    )
    judged = verdicts(left_open, found, extra)
    s.add(settled_table(left_open, found, main, extra, judged))
    counts = []
    if rows[0]:
        p1 = p1_holds(rows[0], rivals, judged)
        counts.append(
            f"kubetune p1 is no worse than each of {', '.join(rivals)} on {len(p1)} of {len(rows[0])} "
            f"problems{_not_on(rows[0], p1)}"
        )
    if rows[1]:
        p8 = p8_holds(rows[1], longer, judged)
        counts.append(
            f"kubetune p8 is ahead of random at {longer} trials on {len(p8)} of {len(rows[1])}"
            f"{_not_on(rows[1], p8)}"
        )
    s.add(f"With these verdicts: {'; '.join(counts)}.")


def _not_on(rows: list[GoalRow], held: list[str]) -> str:
    missed = [r.problem for r in rows if r.problem not in held]
    return f" (not on {', '.join(missed)})" if missed else ""
