"""10. Late binding: with a queue's quota below ``budget.parallel``, when are points chosen?

A trial's point is chosen when it is launched. Launched into a Kueue queue with
a quota for Q trials, P > Q trials at once leave P - Q of them waiting, their
points chosen on the results known at launch, as parallel P's are, while the
quota runs only Q at a time. ``budget.max_queued`` keeps at most M waiting:
each point is then chosen about when its trial may run. The simulator is
bench/search.py's ``kubetune_run`` with its quota model; each trial lasts one
round once admitted, so Q at once take trials/Q rounds.

``python -m bench late_binding``; one cell:
``python -m bench.search --problem branin --method "kubetune p8 quota2 queued1"``.
"""

from __future__ import annotations

import math

import numpy as np

from bench.common import Context, Section, machine, table
from bench.search import BUDGET, SEEDS, median_iqr, problem_table, regret, run_cells
from bench.search_problems import SYNTHETIC, Problem

QUOTA = 2
PARALLEL = 8
ALONE = f"kubetune p{QUOTA}"  # (a) the quota's worth, no queue
NAIVE = f"kubetune p{PARALLEL} quota{QUOTA}"  # (b) every slot of parallel filled, most waiting
LATE = tuple(f"{NAIVE} queued{m}" for m in (0, 1, 2))  # (c) at most m waiting
METHODS = (ALONE, NAIVE, *LATE)
AT = (BUDGET, math.ceil(BUDGET * 1.5))  # equal trials: the comparison's checkpoints


def run(ctx: Context) -> Section:
    budget, seeds = (12, 2) if ctx.smoke else (BUDGET, SEEDS)
    names = ["branin"] if ctx.smoke else list(SYNTHETIC)
    runs = run_cells(names, METHODS, seeds, budget, None)
    return _section({n: SYNTHETIC[n] for n in names}, runs, budget, seeds)


def _section(
    found: dict[str, Problem], runs: dict[str, dict[str, list[list[float]]]], budget: int, seeds: int
) -> Section:
    s = Section("late_binding", "10. Late binding: points chosen as the queue admits trials")
    longer = math.ceil(budget * 1.5)
    s.add(
        f"{machine().line()}. bench/search.py's simulator of the study loop, launching into a queue "
        f"with a quota of {QUOTA} trials: (a) `{ALONE}`, parallel {QUOTA} and no queue; (b) `{NAIVE}`, "
        f"`parallel: {PARALLEL}` against the quota, every point chosen at launch and {PARALLEL - QUOTA} "
        f"of them waiting; (c) `{NAIVE} queuedM`, the same with `budget.max_queued: M` (M = 0 launches "
        "only into a free quota slot, which the controller cannot know of: a bench-only bound). The "
        "oldest admitted trial finishes first, the first waiting one is admitted in its place. "
        f"{longer} trials per run, {seeds} seeds per method and problem; regret as in section 4 "
        "(median [interquartile range]); rounds: wall time to target, trials to target / trials running "
        f"at once ({QUOTA} for all of them). Command: `.venv/bin/python -m bench late_binding`; one cell: "
        f'`.venv/bin/python -m bench.search --problem branin --method "{LATE[1]}"`.'
    )
    for name, problem in found.items():
        s.add(f"**{name}** (optimum {problem.optimum:g}, target: regret <= {problem.target:g})")
        s.add(problem_table(problem, runs[name]))
    rows = [_goal(problem, runs[name], k) for name, problem in found.items() for k in AT if k <= longer]
    s.add(
        f"**Goal**: at equal trials, late binding searches as parallel {QUOTA} does, and naive "
        f"queuing as parallel {PARALLEL}: regret (median [IQR]), and whether each median lies within "
        f"`{ALONE}`'s interquartile range. Identical runs: how many seeds gave `{ALONE}`'s very points."
    )
    header = ["problem", "trials", ALONE, *(m.removeprefix(NAIVE).strip() or "naive" for m in METHODS[1:])]
    header += ["within p2's IQR (naive, queued0, 1, 2)", "identical runs (naive, queued0, 1, 2)"]
    s.add(table(header, rows))
    s.add(
        f"Reading: a point is asked with every launched trial pending, waiting ones too, so against a "
        f"quota of Q, `max_queued: M` searches as parallel Q + M does, point for point (and naive queuing "
        f"as parallel {PARALLEL}), at the quota's speed: {QUOTA} trials a round for all of them, so rounds "
        "follow trials. M = 0 would be parallel Q's very search, but the controller cannot launch into "
        "the quota without waiting in the queue first (`budget.max_queued` is at least 1). M = 1 asks "
        "each point when the trial before it is admitted, one trial ready for the next slot; M = 2 "
        "searches on staler results for no gain in speed. Hence the default, `max_queued: 1`."
    )
    s.data = {"runs": runs, "quota": QUOTA, "parallel": PARALLEL}
    return s


def _goal(problem: Problem, runs: dict[str, list[list[float]]], k: int) -> list[str]:
    at = {m: [float(regret(c, problem.optimum)[k - 1]) for c in runs[m]] for m in METHODS}
    q1, q3 = np.percentile(at[ALONE], [25, 75])
    within = ["yes" if q1 <= np.median(at[m]) <= q3 else "no" for m in METHODS[1:]]
    same = [f"{sum(a == b for a, b in zip(runs[m], runs[ALONE], strict=True))}/{len(runs[m])}"
            for m in METHODS[1:]]  # fmt: skip
    return [problem.name, str(k), *(median_iqr(at[m]) for m in METHODS), ", ".join(within), ", ".join(same)]
