"""The goals' verdicts (bench/search.py: versus, goals) and how firmly the seeds hold them."""

from __future__ import annotations

import numpy as np

from bench.search import BUDGET, beyond, goals, goals_table, versus, versus_table
from bench.search_problems import Problem


def test_clearly_separated_methods_give_verdicts_no_draw_of_the_seeds_would_flip() -> None:
    rng = np.random.default_rng(1)
    low, high = rng.uniform(0, 1, 20).tolist(), rng.uniform(10, 11, 20).tolist()
    assert beyond(low, high, 75) == 0.0
    assert beyond(high, low, 75) == 1.0


def test_a_median_at_the_rivals_upper_quartile_is_left_to_the_seeds() -> None:
    rng = np.random.default_rng(2)
    theirs = rng.normal(0, 1, 20)
    ours = (theirs + np.percentile(theirs, 75) - np.median(theirs)).tolist()  # our median on their q3
    odds = beyond(ours, theirs.tolist(), 75)
    assert 0.3 < odds < 0.7
    assert beyond(ours, theirs.tolist(), 75) == odds  # the same draws each time: the tables do not move


def test_each_verdict_carries_its_odds() -> None:
    problem = Problem("flat", (), lambda x: 0.0, optimum=0.0, target=1.0)
    at_budget = {"kubetune p1": [1.0] * 20, "tpe": [2.0, 3.0] * 10, "gp": [0.1] * 20}
    runs = {m: [[v] * BUDGET for v in values] for m, values in at_budget.items()}
    row = versus(problem, runs, ["tpe", "gp"])
    assert row is not None and row.problem == "flat" and row.cells[-2:] == ["yes (0%)", "no (100%)"]
    assert [(v.holds, v.against) for v in row.verdicts] == [(True, 0.0), (False, 1.0)]
    assert versus(problem, {m: [c[:-1] for c in cs] for m, cs in runs.items()}, ["tpe", "gp"]) is None
    header, _, cells = versus_table([row], ["tpe", "gp"]).splitlines()
    columns = ["problem", "kubetune p1", "tpe", "gp", "no worse than tpe", "no worse than gp"]
    assert header == "| " + " | ".join(columns) + " |" and cells.endswith("| yes (0%) | no (100%) |")


def test_parallel_8_tied_with_random_is_not_ahead_whatever_the_seeds() -> None:
    problem = Problem("plateau", (), lambda x: 0.0, optimum=0.0, target=1.0)
    longer = BUDGET * 3 // 2
    runs = {"kubetune p1": [[1.0] * BUDGET] * 20, "kubetune p8": [[1.0] * longer] * 20,
            "random": [[1.0] * longer] * 20}  # fmt: skip
    tied = goals(problem, runs)
    assert tied is not None and tied.cells[1:3] == ["1 vs 1: no (100%)"] * 2
    assert not any(v.holds for v in tied.verdicts)
    header = goals_table([tied]).splitlines()[0]
    assert f"| p8 vs random at {BUDGET} | p8 vs random at {longer} | p1 at {BUDGET} |" in header
    runs["kubetune p8"] = [[0.5] * longer] * 20
    ahead = goals(problem, runs)
    assert ahead is not None and ahead.cells[1:3] == ["0.5 vs 1: yes (0%)"] * 2
    assert all(v.holds for v in ahead.verdicts)
