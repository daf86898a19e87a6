"""15. Held-out problems: the default search where it was not chosen.

Section 14 chose the default search (the trust region every other ask) on
its suite; a default fitted to 17 problems can still fail on the 18th. These
problems (bench/suite_problems.py, ``HELD_OUT``) were added after the choice
and never used to make it: they are run with the default, the previous
default (``global``, every ask over the whole space) and the rivals, and
reported as section 14 reports its suite. The first six have since taken
part in screening changes (section 14's prose); ``UNSEEN`` names the six
added after that, which chose nothing (the screens that have run on them
adopted nothing), summed up on their own. ``python -m bench holdout`` (on
demand, about 30 minutes on two cores where no run is kept).
"""

from __future__ import annotations

import functools
import math

from bench import settled, suite, suite_problems
from bench.common import Context, Section, log, machine, table
from bench.search import (
    BEYOND,
    BUDGET,
    GoalRow,
    installed,
    median_iqr,
    run_cells,
    shelves,
    versus,
    versus_table,
)
from bench.search_problems import Problem

SEEDS = 10
METHODS = ("kubetune p1", "kubetune p8", "kubetune p1 global", "kubetune p8 global", "gp_minimize",
           "optuna TPE", "optuna GP", "random")  # fmt: skip
SMOKE_NAMES = ("beale",)


def run(ctx: Context) -> Section:
    budget, seeds = (12, 1) if ctx.smoke else (BUDGET, SEEDS)
    names = SMOKE_NAMES if ctx.smoke else tuple(suite_problems.HELD_OUT)
    found = suite_problems.problems(names)
    methods = installed(METHODS, ctx.smoke)
    log(f"holdout: {len(found)} problems, {len(methods)} methods, {seeds} seeds")
    maker = functools.partial(suite_problems.problems, names)  # each worker's, picklable
    kept = () if ctx.smoke else shelves()
    runs = run_cells(list(found), methods, seeds, budget, None, maker, suite.WORKERS, kept)
    left_open = settled.open_goals(_versus_rows(found, runs), [], _rivals(runs), math.ceil(budget * 1.5))
    extra = settled.more_seeds(left_open, budget, None, maker, suite.WORKERS, kept)
    section = _section(found, runs, extra, budget, seeds)
    section.data["kept_runs"] = sum(k.hits for k in kept)
    return section


def _rivals(runs: dict[str, dict[str, list[list[float]]]]) -> list[str]:
    """The methods parallel 1 is judged against here: the previous default and the rivals run."""
    ran = next(iter(runs.values()))
    return [m for m in ("kubetune p1 global", "gp_minimize", "optuna TPE", "optuna GP") if m in ran]


def _versus_rows(found: dict[str, Problem], runs: dict[str, dict[str, list[list[float]]]]) -> list[GoalRow]:
    return [v for n, p in found.items() if (v := versus(p, runs[n], _rivals(runs)))]


def _section(
    found: dict[str, Problem],
    runs: dict[str, dict[str, list[list[float]]]],
    extra: dict[str, dict[str, list[list[float]]]],
    budget: int,
    seeds: int,
) -> Section:
    s = Section("holdout", "15. Held-out problems: the default where it was not chosen")
    longer = math.ceil(budget * 1.5)
    s.add(
        f"{machine().line()}. Section 14's runners and statistics on {len(found)} problems outside its "
        "suite (the first six have since taken part in screening changes, section 14; the unseen ones "
        "only in sixteen screens that adopted nothing, each named in section 14's prose): "
        f"{budget} trials per sequential run, {longer} per "
        f"parallel run and random search, {seeds} seeds, {suite.WORKERS} worker processes. `global`: the "
        "previous default, every ask over the whole space (`optimizer.trust_region: none`). Runs are kept "
        "and reused as section 14's are. Run: "
        "`.venv/bin/python -m bench holdout`."
    )
    rows = [[n, suite.dims_of(p.space), f"{p.optimum:.6g}", f"{p.target:.3g}", suite_problems.WHY[n]]
            for n, p in found.items()]  # fmt: skip
    s.add(table(["problem", "space", "optimum", "target regret", "why it is here"], rows))
    s.add(f"**Across the held-out problems** at {budget} trials, ranked as in section 14.")
    s.add(suite.summary(found, runs, budget))
    if unseen := {n: p for n, p in found.items() if n in suite_problems.UNSEEN}:
        s.add(f"**Across the {len(unseen)} unseen problems** alone: no change adopted was screened on them.")
        s.add(suite.summary(unseen, {n: runs[n] for n in unseen}, budget))
    rivals, versus_rows = _rivals(runs), _versus_rows(found, runs)
    s.add(
        f"**Parallel 1** after {budget} trials: kubetune p1's median against each other method's "
        f"upper quartile; {BEYOND}"
    )
    s.add(versus_table(versus_rows, rivals))
    if left_open := settled.open_goals(versus_rows, [], rivals, longer):
        settled.report(s, left_open, found, runs, extra, (versus_rows, []), rivals, longer)
    s.add(f"**Parallel 8** after {longer} trials, median [IQR], against the previous default and random.")
    rows = [
        [n, *(median_iqr(suite.at(p, runs[n][m], longer)) for m in ("kubetune p8", "kubetune p8 global",
                                                                            "random"))]
        for n, p in found.items()
    ]  # fmt: skip
    s.add(table(["problem", "kubetune p8", "kubetune p8 global", "random"], rows))
    s.data = {"main": runs, "settled": extra, "seeds": seeds}
    return s
