"""13. Several objectives and constraints: the Pareto front kubetune finds, against Optuna's.

Problems: ZDT1 and ZDT2 (Zitzler, Deb and Thiele, 2000) on 6 inputs in
[0, 1], the first convex, the second not; and BNH (Binh and Korn, 1997), two
objectives under two constraints (one an upper bound, one a lower), whose
feasible Pareto front is known: x1 = x2 in [0, 3], then x2 = 3, x1 in [3, 5].
The measure is the hypervolume of the feasible points tried so far, up to a
stated reference point, as its gap to the true front's (lower is better: the
gap keeps the digits a hypervolume dominated by a constant area would lose).

Methods, each given every trial's true values (no noise):

* ``kubetune pN``: ``optimizer.suggest`` as the Study calls it (ParEGO on the
  GP, the probability of feasibility for BNH; search/multi.py) with the
  spec's defaults (10 random points first), N trials in flight, the oldest
  finishing first;
* ``optuna NSGA-II``: NSGAIISampler, population 20 (its default of 50 would
  be one generation within 60 trials), constraints through constraints_func;
* ``optuna MOTPE``: TPESampler, which is multi-objective TPE on a study of
  several directions, constraints through constraints_func;
* ``random``: uniform draws.

ZDT's Pareto set lies on a face of the cube (x2 ... x6 = 0), where EI on a
GP readily looks and the evolutionary and TPE samplers seldom do: read its
margins with that in mind; BNH's front is inside its box.

``optuna GPSampler`` needs torch, which this venv lacks: left out. One cell
from the command line: ``python -m bench.multi_objective --problem zdt1 --method "kubetune p1" --seeds 3``.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import numpy as np

from bench.common import Context, Section, log, machine, table
from bench.search import median_iqr
from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer, pareto
from kubetune.controller.search.space import point, skopt_dimensions
from kubetune.spec import Budget, Constraint, Dimension, Objective, OptimizerSettings, Real, Spec

BUDGET = 60
CHECKPOINTS = (20, 40, 60)
SEEDS = 10
METHODS = ("kubetune p1", "kubetune p8", "optuna NSGA-II", "optuna MOTPE", "random")
WORKERS = 1  # the machine is shared: one process


@dataclass(frozen=True)
class Problem:
    name: str
    space: tuple[Dimension, ...]
    losses: Callable[[Params], tuple[float, ...]]  # every objective, minimised
    constraints: tuple[Constraint, ...]  # on the metrics c0, c1, ...
    measured: Callable[[Params], tuple[float, ...]]  # those metrics' values
    reference: tuple[float, ...]
    front: Sequence[tuple[float, ...]]  # a dense sample of the true feasible front

    def feasible(self, p: Params) -> bool:
        return all(c.holds(v) for c, v in zip(self.constraints, self.measured(p), strict=True))


def zdt(p: Params, shape: Callable[[float], float]) -> tuple[float, float]:
    x = [float(p[f"x{i}"]) for i in range(6)]
    g = 1 + 9 * sum(x[1:]) / 5
    return x[0], g * shape(x[0] / g)


def bnh(p: Params) -> tuple[float, float]:
    x1, x2 = float(p["x1"]), float(p["x2"])
    return 4 * x1**2 + 4 * x2**2, (x1 - 5) ** 2 + (x2 - 5) ** 2


def bnh_constraints(p: Params) -> tuple[float, float]:
    x1, x2 = float(p["x1"]), float(p["x2"])
    return (x1 - 5) ** 2 + x2**2, (x1 - 8) ** 2 + (x2 + 3) ** 2


def _zdt(name: str, shape: Callable[[float], float]) -> Problem:
    grid = np.linspace(0, 1, 2001)
    return Problem(name, tuple(Real(f"x{i}", 0.0, 1.0) for i in range(6)), partial(zdt, shape=shape), (),
                   lambda p: (), (1.1, 11.0), [(f, shape(f)) for f in grid])  # fmt: skip


def _bnh_front() -> list[tuple[float, ...]]:
    along = [{"x1": t, "x2": t} for t in np.linspace(0, 3, 1001)]
    across = [{"x1": t, "x2": 3.0} for t in np.linspace(3, 5, 1001)]
    return [bnh(p) for p in [*along, *across]]


PROBLEMS = {
    "zdt1": _zdt("zdt1", lambda r: 1 - math.sqrt(r)),
    "zdt2": _zdt("zdt2", lambda r: 1 - r**2),
    "bnh": Problem(
        "bnh",
        (Real("x1", 0.0, 5.0), Real("x2", 0.0, 3.0)),
        bnh,
        (Constraint("c0", max=25.0), Constraint("c1", min=7.7)),
        bnh_constraints,
        (140.0, 50.0),
        _bnh_front(),
    ),
}


# --- the methods: each returns the points it tried, in trial order ---------------------


def kubetune_run(problem: Problem, seed: int, budget: int, parallel: int) -> list[Params]:
    """The Study's loop without the cluster: up to ``parallel`` in flight, the oldest finishes first."""
    objectives = tuple(Objective(f"f{j}", "minimize") for j in range(len(problem.reference)))
    spec = Spec(space=problem.space, x0=(), objectives=objectives, constraints=problem.constraints,
                optimizer=OptimizerSettings(random_state=seed),
                budget=Budget(max_trials=budget, parallel=parallel))  # fmt: skip
    finished: list[TrialResult] = []
    running: deque[tuple[int, Params]] = deque()
    while len(finished) < budget:
        while len(running) < parallel and len(finished) + len(running) < budget:
            index = len(finished) + len(running)
            running.append((index, optimizer.suggest(spec, index, finished, [p for _, p in running])))
        index, params = running.popleft()
        finished.append(_result(problem, index, params))
    return [r.params for r in sorted(finished, key=lambda r: r.index)]


def _result(problem: Problem, index: int, params: Params) -> TrialResult:
    losses = problem.losses(params)
    metrics = {**{f"f{j}": v for j, v in enumerate(losses)},
               **{f"c{j}": v for j, v in enumerate(problem.measured(params))}}  # fmt: skip
    return TrialResult(index=index, status="succeeded", params=params, objective="f0",
                       objective_value=losses[0], metrics=metrics)  # fmt: skip


def optuna_run(problem: Problem, seed: int, budget: int, sampler: str) -> list[Params]:
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def violations(trial: optuna.trial.FrozenTrial) -> list[float]:
        """Optuna's convention: a value <= 0 is kept."""
        values = problem.measured(trial.params)
        return [(v - c.max if c.max is not None else c.min - v) for c, v in  # type: ignore[operator]
                zip(problem.constraints, values, strict=True)]  # fmt: skip

    constraints = violations if problem.constraints else None
    samplers = optuna.samplers
    chosen = (
        samplers.NSGAIISampler(population_size=20, seed=seed, constraints_func=constraints)
        if sampler == "NSGA-II"
        else samplers.TPESampler(seed=seed, constraints_func=constraints)
    )
    study = optuna.create_study(directions=["minimize"] * len(problem.reference), sampler=chosen)
    distributions: dict[str, BaseDistribution] = {
        d.name: FloatDistribution(d.low, d.high) for d in problem.space if isinstance(d, Real)
    }
    points = []
    for _ in range(budget):
        trial = study.ask(distributions)
        points.append(dict(trial.params))
        study.tell(trial, list(problem.losses(trial.params)))
    return points


def random_run(problem: Problem, seed: int, budget: int) -> list[Params]:
    from skopt.space import Space

    spec = Spec(space=problem.space, x0=())
    return [point(spec, r) for r in Space(skopt_dimensions(spec)).rvs(budget, random_state=seed)]


def method_run(method: str) -> Callable[[Problem, int, int], list[Params]]:
    fixed: dict[str, Callable[[Problem, int, int], list[Params]]] = {
        "optuna NSGA-II": partial(optuna_run, sampler="NSGA-II"),
        "optuna MOTPE": partial(optuna_run, sampler="TPE"),
        "random": random_run,
    }
    if method in fixed:
        return fixed[method]
    words = method.split()
    if len(words) != 2 or words[0] != "kubetune" or not words[1].startswith("p"):
        raise SystemExit(f"--method: unknown method {method!r}; one of {', '.join(METHODS)}")
    return partial(kubetune_run, parallel=int(words[1][1:]))


# --- measuring ----------------------------------------------------------------------


def hypervolumes(problem: Problem, points: Sequence[Params], checkpoints: Sequence[int]) -> list[float]:
    """The hypervolume of the feasible points among the first k, for each k."""
    kept = [problem.losses(p) if problem.feasible(p) else None for p in points]
    reference = problem.reference
    return [pareto.hypervolume([v for v in kept[:k] if v is not None], reference) for k in checkpoints]


def _cell(problem: str, method: str, seed: int, budget: int, checkpoints: tuple[int, ...]) -> list[float]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        found = PROBLEMS[problem]
        return hypervolumes(found, method_run(method)(found, seed, budget), checkpoints)


def run_cells(names: Sequence[str], methods: Sequence[str], seeds: int, budget: int,
              checkpoints: tuple[int, ...]) -> dict[str, dict[str, list[list[float]]]]:  # fmt: skip
    """{problem: {method: [hypervolumes at the checkpoints, per seed]}}, in WORKERS spawned processes."""
    jobs = [(p, m, s) for p in names for m in methods for s in range(seeds)]
    out: dict[str, dict[str, list[list[float]]]] = {p: {m: [] for m in methods} for p in names}
    with ProcessPoolExecutor(WORKERS, get_context("spawn")) as pool:
        futures = [pool.submit(_cell, p, m, s, budget, checkpoints) for p, m, s in jobs]
        for n, ((p, m, _), fut) in enumerate(zip(jobs, futures, strict=True)):
            out[p][m].append(fut.result())
            log(f"multi_objective: {n + 1}/{len(jobs)} runs ({p}, {m})")
    return out


def problem_table(problem: Problem, runs: dict[str, list[list[float]]], checkpoints: Sequence[int]) -> str:
    """Each method's gap to the true front's hypervolume at the checkpoints: median [IQR] over seeds."""
    best = true_hypervolume(problem)
    rows = [[m, *(median_iqr([best - hv[k] for hv in per_seed]) for k in range(len(checkpoints)))]
            for m, per_seed in runs.items()]  # fmt: skip
    return table(["method", *(f"gap after {k}" for k in checkpoints)], rows)


def true_hypervolume(problem: Problem) -> float:
    return pareto.hypervolume(problem.front, problem.reference)


def run(ctx: Context) -> Section:
    budget, seeds, checkpoints = (8, 1, (4, 8)) if ctx.smoke else (BUDGET, SEEDS, CHECKPOINTS)
    names = ["zdt1", "bnh"] if ctx.smoke else list(PROBLEMS)
    runs = run_cells(names, METHODS, seeds, budget, checkpoints)
    section = Section("multi_objective", "13. Several objectives and constraints: hypervolume")
    section.add(
        machine().line(),
        f"{seeds} seeds per cell (0 to {seeds - 1}), {budget} trials; median [IQR] over the seeds of the gap "
        "between the true front's hypervolume and that of the feasible points tried so far (lower is "
        "better). Reference points: ZDT1 and ZDT2 (1.1, 11), BNH (140, 50). `python -m bench "
        "multi_objective`; the methods are described in bench/multi_objective.py.",
    )
    for name in names:
        problem = PROBLEMS[name]
        best = true_hypervolume(problem)
        section.add(f"**{name}** (the true front's hypervolume: {best:.5g})",
                    problem_table(problem, runs[name], checkpoints))  # fmt: skip
    section.data = {"runs": runs, "seeds": seeds, "budget": budget, "checkpoints": list(checkpoints)}
    return section


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.multi_objective")
    p.add_argument("--problem", choices=list(PROBLEMS), required=True)
    p.add_argument("--method", required=True, help=", ".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=BUDGET)
    ns = p.parse_args()
    checkpoints = tuple(k for k in CHECKPOINTS if k <= ns.budget) or (ns.budget,)
    runs = run_cells([ns.problem], [ns.method], ns.seeds, ns.budget, checkpoints)
    print(problem_table(PROBLEMS[ns.problem], runs[ns.problem], checkpoints))


if __name__ == "__main__":
    main()
