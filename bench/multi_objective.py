"""13. Several objectives and constraints: the Pareto front kubetune finds, against Optuna's.

Problems: ZDT1 and ZDT2 (Zitzler, Deb and Thiele, 2000) on 6 inputs in
[0, 1], the first convex, the second not; and BNH (Binh and Korn, 1997), two
objectives under two constraints (one an upper bound, one a lower), whose
feasible Pareto front is known: x1 = x2 in [0, 3], then x2 = 3, x1 in [3, 5];
and the CNN of section 4 (its surrogate, bench/search_cnn.py) as accuracy
against size: the validation error (1 - accuracy) and log10 of the model's
parameter count, both minimised, over section 4's space (learning rate,
dense layers, dense nodes; the convolutions fixed at the notebook's). The
count is a formula of the architecture (``param_count``, checked against
Keras' ``count_params`` in tests/test_bench_multi_objective.py); its log
puts a 35-thousand and a 2.7-million-parameter model on one scale.
The measure is the hypervolume of the feasible points tried so far, up to a
stated reference point, as its gap to the true front's (lower is better: the
gap keeps the digits a hypervolume dominated by a constant area would lose).

Methods, each given every trial's true values (no noise), but for the CNN,
whose accuracy they see with the surrogate's seed-to-seed noise as section 4's
methods do (the hypervolume is measured on the surrogate's mean):

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
margins with that in mind; BNH's front is inside its box, the CNN's spans
the whole range of layers and nodes.

``optuna GPSampler`` needs torch, which this venv lacks: left out. One cell
from the command line: ``python -m bench.multi_objective --problem zdt1 --method "kubetune p1" --seeds 3``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import numpy as np

from bench import search_cnn
from bench.common import Context, Section, log, machine, table
from bench.search import cnn_surrogate, median_iqr, optuna_distribution
from bench.search_cnn import Surrogate, design
from bench.search_problems import cnn_problem
from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer, pareto
from kubetune.controller.search.space import point, skopt_dimensions
from kubetune.kinds import CNN
from kubetune.spec import Budget, Constraint, Dimension, Objective, OptimizerSettings, Real, Spec

BUDGET = 60
CHECKPOINTS = (20, 40, 60)
SEEDS = 20
METHODS = ("kubetune p1", "kubetune p8", "optuna NSGA-II", "optuna MOTPE", "random")
RIVALS = ("optuna NSGA-II", "optuna MOTPE")
AT = 40  # the goals' checkpoint
WORKERS = 1  # the machine is shared: one process
MINUTES_VAR = "BENCH_MULTI_OBJECTIVE_MINUTES"  # if set: no seed starts after that many minutes
# The CNN's surrogate: a prefix of section 4's Sobol design (its first 48 configurations, the noise
# from the first 4 on 3 more seeds; 60 trainings, about 15 min on 2 cores, where section 4's 256
# and 24 take 50), and the learning rates of the grid its true front is taken over.
CNN_CONFIGS, CNN_NOISE_CONFIGS, CNN_RATES = 48, 4, 256
CNN_REFERENCE = (0.9, 6.5)  # error at chance (accuracy 0.1); log10 of 3.2 million parameters
INPUT_SIDE, INPUT_CHANNELS, CLASSES = 28, 1, 10  # kubetune/trial/model.py's INPUT_SHAPE, NUM_CLASSES


@dataclass(frozen=True)
class Problem:
    name: str
    space: tuple[Dimension, ...]
    losses: Callable[[Params], tuple[float, ...]]  # every objective, minimised
    constraints: tuple[Constraint, ...]  # on the metrics c0, c1, ...
    measured: Callable[[Params], tuple[float, ...]]  # those metrics' values
    reference: tuple[float, ...]
    front: Sequence[tuple[float, ...]]  # a dense sample of the true feasible front
    # What a method sees of a trial (point, seed, trial index): the losses, unless given.
    observe: Callable[[Params, int, int], tuple[float, ...]] | None = None

    def feasible(self, p: Params) -> bool:
        return all(c.holds(v) for c, v in zip(self.constraints, self.measured(p), strict=True))

    def seen(self, p: Params, seed: int, index: int) -> tuple[float, ...]:
        return self.observe(p, seed, index) if self.observe else self.losses(p)


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


def param_count(p: Params) -> int:
    """The CNN's trainable parameters (kubetune/trial/model.py's build_model): two same-padded
    convolutions, each followed by a 2x2 max pooling of stride 2, the dense stack, the softmax."""
    h = {**CNN.hyperparameters, **p}
    k, c1, c2 = int(h["kernel_size"]), int(h["conv1_filters"]), int(h["conv2_filters"])
    layers, nodes = int(h["num_dense_layers"]), int(h["num_dense_nodes"])
    side = INPUT_SIDE // 2 // 2
    convs = (k * k * INPUT_CHANNELS + 1) * c1 + (k * k * c1 + 1) * c2
    dense = (side * side * c2 + 1) * nodes + (layers - 1) * (nodes + 1) * nodes
    return convs + dense + (nodes + 1) * CLASSES


def cnn(s: Surrogate, rates: int = CNN_RATES, with_front: bool = True) -> Problem:
    """The CNN as accuracy against size: (1 - accuracy, log10 parameters), both minimised.

    Its true front: the surrogate's best accuracy of every architecture (each
    layer and node count) over ``rates`` log-spaced learning rates, and the
    architectures no other beats in both.
    """

    def size(p: Params) -> float:
        return math.log10(param_count(p))

    def losses(p: Params) -> tuple[float, float]:
        return 1 - float(s.mean([p])[0]), size(p)

    def observe(p: Params, seed: int, index: int) -> tuple[float, float]:
        return 1 - s.noisy(p, seed, index), size(p)

    return Problem("cnn", cnn_problem(s).space, losses, (), lambda p: (), CNN_REFERENCE,
                   cnn_front(s, rates) if with_front else [], observe)  # fmt: skip


def cnn_front(s: Surrogate, rates: int) -> list[tuple[float, ...]]:
    best: list[tuple[float, float]] = []
    for layers in range(1, 6):
        for nodes in range(5, 513):
            grid: list[Params] = [{"learning_rate": float(r), "num_dense_layers": layers,
                                   "num_dense_nodes": nodes} for r in np.logspace(-5, -1, rates)]  # fmt: skip
            best.append((1 - float(s.mean(grid).max()), math.log10(param_count(grid[0]))))
    kept: list[tuple[float, ...]] = []
    low = math.inf
    for error, size in sorted(best):  # the staircase: each kept point smaller than all before it
        if size < low:
            kept.append((error, size))
            low = size
    return kept


def stand_in(configs: int = 16) -> Surrogate:
    """A smoke run's surrogate, trained on nothing: a smooth accuracy over the design, peaking at a
    learning rate of 1e-3 and favouring width, with a fixed noise."""
    points = design(configs)
    values = [
        0.8 - 0.05 * (math.log10(float(p["learning_rate"])) + 3) ** 2 + 0.0002 * int(p["num_dense_nodes"])
        for p in points
    ]
    return Surrogate(points, [max(0.1, v) for v in values], (0.02, 1, 0.02))


_CNN: list[Problem] = []  # a worker's CNN problem (its surrogate sent once, at the worker's start)


def _worker(s: Surrogate | None) -> None:
    if s is not None:
        _CNN.append(cnn(s, with_front=False))


def problem_named(name: str) -> Problem:
    return _CNN[0] if name == "cnn" else PROBLEMS[name]


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
        finished.append(_result(problem, index, params, seed))
    return [r.params for r in sorted(finished, key=lambda r: r.index)]


def _result(problem: Problem, index: int, params: Params, seed: int) -> TrialResult:
    losses = problem.seen(params, seed, index)
    metrics = {**{f"f{j}": v for j, v in enumerate(losses)},
               **{f"c{j}": v for j, v in enumerate(problem.measured(params))}}  # fmt: skip
    return TrialResult(index=index, status="succeeded", params=params, objective="f0",
                       objective_value=losses[0], metrics=metrics)  # fmt: skip


def optuna_run(problem: Problem, seed: int, budget: int, sampler: str) -> list[Params]:
    import optuna
    from optuna.distributions import BaseDistribution

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
    distributions: dict[str, BaseDistribution] = {d.name: optuna_distribution(d) for d in problem.space}
    points = []
    for index in range(budget):
        trial = study.ask(distributions)
        points.append(dict(trial.params))
        study.tell(trial, list(problem.seen(trial.params, seed, index)))
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
        found = problem_named(problem)
        return hypervolumes(found, method_run(method)(found, seed, budget), checkpoints)


def run_cells(names: Sequence[str], methods: Sequence[str], seeds: int, budget: int,
              checkpoints: tuple[int, ...], surrogate: Surrogate | None = None, minutes: float | None = None,
              ) -> dict[str, dict[str, list[list[float]]]]:  # fmt: skip
    """{problem: {method: [hypervolumes at the checkpoints, per seed]}}, in WORKERS spawned processes.

    Seed by seed, every cell of one seed before the next: with ``minutes``, no
    seed starts after that many minutes, and the seeds done are what is
    returned. Spawned, not forked: the process may hold TensorFlow (a whole
    ``python -m bench`` trains models in this one).
    """
    jobs = [(p, m, s) for s in range(seeds) for p in names for m in methods]
    out: dict[str, dict[str, list[list[float]]]] = {p: {m: [] for m in methods} for p in names}
    t0 = time.monotonic()
    with ProcessPoolExecutor(
        WORKERS, get_context("spawn"), initializer=_worker, initargs=(surrogate,)
    ) as pool:
        futures = [pool.submit(_cell, p, m, s, budget, checkpoints) for p, m, s in jobs]
        for n, ((p, m, s), fut) in enumerate(zip(jobs, futures, strict=True)):
            out[p][m].append(fut.result())
            log(f"multi_objective: {n + 1}/{len(jobs)} runs (seed {s}, {p}, {m})")
            seed_done = (n + 1) % (len(names) * len(methods)) == 0 and n + 1 < len(jobs)
            if seed_done and minutes is not None and time.monotonic() - t0 > minutes * 60:
                log(f"multi_objective: {minutes:g} min passed; stopping after seed {s}")
                pool.shutdown(wait=True, cancel_futures=True)
                break
    return out


def problem_table(problem: Problem, runs: dict[str, list[list[float]]], checkpoints: Sequence[int]) -> str:
    """Each method's gap to the true front's hypervolume at the checkpoints: median [IQR] over seeds."""
    best = true_hypervolume(problem)
    rows = [[m, *(median_iqr([best - hv[k] for hv in per_seed]) for k in range(len(checkpoints)))]
            for m, per_seed in runs.items()]  # fmt: skip
    return table(["method", *(f"gap after {k}" for k in checkpoints)], rows)


_TRUE: dict[int, tuple[Problem, float]] = {}  # by id, the problem kept: its front's Pareto sort is O(n^2)


def true_hypervolume(problem: Problem) -> float:
    if id(problem) not in _TRUE:
        _TRUE[id(problem)] = problem, pareto.hypervolume(problem.front, problem.reference)
    return _TRUE[id(problem)][1]


def gaps_at(problem: Problem, runs: dict[str, list[list[float]]], column: int) -> dict[str, list[float]]:
    best = true_hypervolume(problem)
    return {m: [best - hv[column] for hv in per_seed] for m, per_seed in runs.items()}


def verdicts(problem: Problem, runs: dict[str, list[list[float]]], column: int) -> dict[str, bool]:
    """The goals at one checkpoint: p1's median gap no larger than each rival's upper quartile;
    p8's median gap below random's."""
    gaps = gaps_at(problem, runs, column)
    p1 = float(np.median(gaps["kubetune p1"]))
    out = {m: p1 <= float(np.percentile(gaps[m], 75)) for m in RIVALS}
    out["random"] = float(np.median(gaps["kubetune p8"])) < float(np.median(gaps["random"]))
    return out


def goals_table(found: dict[str, Problem], runs: dict[str, dict[str, list[list[float]]]], column: int) -> str:
    rows = []
    for name, problem in found.items():
        gaps, ok = gaps_at(problem, runs[name], column), verdicts(problem, runs[name], column)
        rows.append([name, *(median_iqr(gaps[m]) for m in ("kubetune p1", *RIVALS, "kubetune p8", "random")),
                     *("yes" if ok[m] else "no" for m in (*RIVALS, "random"))])  # fmt: skip
    return table(["problem", "p1", *RIVALS, "p8", "random",
                  *(f"p1 no worse than {m}" for m in RIVALS), "p8 better than random"], rows)  # fmt: skip


def reading(
    found: dict[str, Problem], runs: dict[str, dict[str, list[list[float]]]], column: int, at: int, rates: int
) -> str:
    """The goals' verdict in words, and what to keep in mind reading them."""
    ok = {name: verdicts(problem, runs[name], column) for name, problem in found.items()}

    def which(passed: list[str]) -> str:
        return ", ".join(passed) if passed else "none"

    p1_met = [n for n, v in ok.items() if all(v[m] for m in RIVALS)]
    p1_missed = [f"{n} (not against {' nor '.join(m for m in RIVALS if not v[m])})"
                 for n, v in ok.items() if n not in p1_met]  # fmt: skip
    p8_met = [n for n, v in ok.items() if v["random"]]
    p8_missed = [n for n in ok if n not in p8_met]
    return (
        f"Reading: after {at} trials kubetune p1's median gap is no larger than each rival's upper "
        f"quartile on {which(p1_met)}"
        + (f"; the goal is missed on {'; '.join(p1_missed)}" if p1_missed else "")
        + f". Parallel 8's median gap is below random search's at equal trials on {which(p8_met)}"
        + (f", not on {', '.join(p8_missed)}" if p8_missed else "")
        + ". Read the ZDT margins with care: their Pareto set lies on a face of the cube (x2 ... x6 = 0), "
        "where EI on a GP readily looks and NSGA-II's crossover and TPE's Parzen estimators "
        "seldom land; a front inside the box, as BNH's (a feasible "
        "front under two constraints) and the CNN's, is the fairer comparison. The CNN's gaps are to a "
        f"front taken on a grid ({rates} learning rates per architecture), so a method may "
        "slightly beat it between grid rates, and its methods saw noisy accuracies."
    )


def run(ctx: Context) -> Section:
    budget, seeds, checkpoints = (8, 1, (4, 8)) if ctx.smoke else (BUDGET, SEEDS, CHECKPOINTS)
    if ctx.smoke:
        surrogate, cnn_line = stand_in(), "CNN: a smoke run's stand-in surrogate (no training)."
    else:
        surrogate, cnn_line = cnn_surrogate(ctx, CNN_CONFIGS, CNN_NOISE_CONFIGS)
    found = {name: PROBLEMS[name] for name in (["zdt1", "bnh"] if ctx.smoke else PROBLEMS)}
    rates = 8 if ctx.smoke else CNN_RATES
    found["cnn"] = cnn(surrogate, rates)
    limit = os.environ.get(MINUTES_VAR)
    runs = run_cells(
        list(found), METHODS, seeds, budget, checkpoints, surrogate, float(limit) if limit else None
    )
    planned, seeds = seeds, len(runs["zdt1"]["random"])
    cut = f" (of {planned} planned: {MINUTES_VAR}={limit} stopped the run)" if seeds < planned else ""
    section = Section("multi_objective", "13. Several objectives and constraints: hypervolume")
    section.add(
        machine().line(),
        f"{seeds} seeds per cell (0 to {seeds - 1}){cut}, {budget} trials; median [IQR] over the "
        "seeds of the gap between the true front's hypervolume and that of the feasible points tried "
        "so far (lower is better). Reference points: ZDT1 and ZDT2 (1.1, 11), BNH (140, 50), the CNN "
        "(0.9, 6.5) in (1 - validation accuracy, log10 parameters): chance accuracy, and 3.2 million "
        "parameters (the largest model has 2.7). The CNN's objectives are the surrogate's accuracy "
        "(the methods see it with its noise, as in section 4; the hypervolume takes its mean) and the "
        "parameter count, a formula of the architecture; its true front is the surrogate's mean on a "
        f"grid: every layer count (1-5) and node count (5-512) at {rates} log-spaced learning "
        "rates in [1e-5, 1e-1], the best rate of each architecture. "
        + cnn_line
        + " `python -m bench multi_objective`; the methods are described in bench/multi_objective.py.",
    )
    for name, problem in found.items():
        best = true_hypervolume(problem)
        section.add(f"**{name}** (the true front's hypervolume: {best:.5g})",
                    problem_table(problem, runs[name], checkpoints))  # fmt: skip
    at = AT if AT in checkpoints else checkpoints[-1]
    column = checkpoints.index(at)
    section.add(
        f"**Goals after {at} trials** (gaps, median [IQR]): kubetune p1's median no larger than each "
        "rival's upper quartile; kubetune p8's median below random search's.",
        goals_table(found, runs, column),
        reading(found, runs, column, at, rates),
    )
    section.data = {"runs": runs, "seeds": seeds, "budget": budget, "checkpoints": list(checkpoints),
                    "cnn_line": cnn_line, "cnn_front": found["cnn"].front}  # fmt: skip
    return section


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.multi_objective")
    p.add_argument("--problem", choices=[*PROBLEMS, "cnn"], required=True)
    p.add_argument("--method", required=True, help=", ".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=BUDGET)
    ns = p.parse_args()
    checkpoints = tuple(k for k in CHECKPOINTS if k <= ns.budget) or (ns.budget,)
    surrogate = None
    if ns.problem == "cnn":  # the cached evaluations (python -m bench multi_objective collects them)
        surrogate = search_cnn.surrogate(search_cnn.Evaluations(None, search_cnn.CACHE_FILE), CNN_CONFIGS,
                                         CNN_NOISE_CONFIGS, minimum=CNN_CONFIGS)  # fmt: skip
    runs = run_cells([ns.problem], [ns.method], ns.seeds, ns.budget, checkpoints, surrogate)
    found = cnn(surrogate) if surrogate else PROBLEMS[ns.problem]
    print(problem_table(found, runs[ns.problem], checkpoints))


if __name__ == "__main__":
    main()
