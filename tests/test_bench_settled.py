"""Goal verdicts the seeds leave open, judged again on more seeds (bench/settled.py)."""

from __future__ import annotations

import numpy as np

from bench import settled
from bench.search import BUDGET, goals, versus
from bench.search_problems import Problem

LONGER = BUDGET * 3 // 2
PROBLEM = Problem("bowl", (), lambda x: 0.0, optimum=0.0, target=1.0)


def _runs(finals: dict[str, list[float]]) -> dict[str, list[list[float]]]:
    """Each method's runs, flat at its final regret."""
    return {m: [[v] * LONGER for v in values] for m, values in finals.items()}


def _close_call(seeds: int, shift: float) -> dict[str, list[list[float]]]:
    """p1's median near TPE's upper quartile, far below gp's; p8 well ahead of random."""
    rng = np.random.default_rng(seeds)
    tpe = rng.normal(0, 1, seeds)
    ours = tpe - np.median(tpe) + np.percentile(tpe, 75) + shift
    return _runs(
        {
            "kubetune p1": ours.tolist(),
            "tpe": tpe.tolist(),
            "gp": (tpe + 100).tolist(),
            "kubetune p8": [0.0] * seeds,
            "random": [5.0] * seeds,
        }
    )


def test_only_the_verdicts_the_bootstrap_flips_often_are_opened() -> None:
    runs = _close_call(20, 0.0)
    row, goal = versus(PROBLEM, runs, ["tpe", "gp"]), goals(PROBLEM, runs)
    assert row is not None and goal is not None
    assert settled.OPEN <= row.verdicts[0].against <= 1 - settled.OPEN
    assert row.verdicts[1].against == 0.0 and goal.verdicts[-1].against == 0.0
    left_open = settled.open_goals([row], [goal], ["tpe", "gp"], LONGER)
    assert left_open == [settled.Goal("bowl", "kubetune p1", "tpe", BUDGET)]
    assert settled.needed(left_open) == {"bowl": ["kubetune p1", "tpe"]}


def test_a_p8_verdict_at_the_longer_budget_is_opened_with_random() -> None:
    runs = _runs({"kubetune p1": [1.0] * 20, "kubetune p8": [1.0, 2.0] * 10, "random": [1.5] * 20})
    goal = goals(PROBLEM, runs)
    assert goal is not None and settled.OPEN <= goal.verdicts[-1].against <= 1 - settled.OPEN
    left_open = settled.open_goals([], [goal], [], LONGER)
    assert left_open == [settled.Goal("bowl", "kubetune p8", "random", LONGER)]
    assert str(left_open[0]) == f"p8 ahead of random after {LONGER}"


def test_more_seeds_can_reverse_an_open_verdict_and_the_counts_follow() -> None:
    few, many = _close_call(20, 0.01), _close_call(60, -0.5)
    row, goal = versus(PROBLEM, few, ["tpe", "gp"]), goals(PROBLEM, few)
    assert row is not None and goal is not None and not row.verdicts[0].holds
    left_open = settled.open_goals([row], [goal], ["tpe", "gp"], LONGER)
    extra = {"bowl": {m: many[m] for m in settled.needed(left_open)["bowl"]}}
    judged = settled.verdicts(left_open, {"bowl": PROBLEM}, extra)
    assert [v.holds for v in judged.values()] == [True]
    assert settled.p1_holds([row], ["tpe", "gp"], {}) == []  # on the section's seeds alone
    assert settled.p1_holds([row], ["tpe", "gp"], judged) == ["bowl"]
    assert settled.p8_holds([goal], LONGER, judged) == ["bowl"]
    header, _, cells = settled.settled_table(
        left_open, {"bowl": PROBLEM}, {"bowl": few}, extra, judged
    ).splitlines()
    assert header == "| problem | goal | 20 seeds | 60 seeds |"
    assert cells.startswith("| bowl | p1 no worse than tpe's upper quartile | ")
    assert ": no (" in cells and cells.count(": yes (") == 1


def test_the_report_counts_only_the_goals_its_section_judges() -> None:
    from bench.common import Section

    few, many = _close_call(20, 0.01), _close_call(60, -0.5)
    row = versus(PROBLEM, few, ["tpe", "gp"])
    assert row is not None
    left_open = settled.open_goals([row], [], ["tpe", "gp"], LONGER)
    extra = {"bowl": {m: many[m] for m in settled.needed(left_open)["bowl"]}}
    s = Section("held", "held")
    settled.report(s, left_open, {"bowl": PROBLEM}, {"bowl": few}, extra, ([row], []), ["tpe", "gp"], LONGER)
    text = s.markdown()
    assert "judged on 60 seeds" in text and "| bowl | p1 no worse than tpe's upper quartile |" in text
    assert text.rstrip().endswith(
        "With these verdicts: kubetune p1 is no worse than each of tpe, gp on 1 of 1 problems."
    )
