"""4. Search efficiency: kubetune's suggest() against the optimizers users would pick instead.

Problems (bench/search_problems.py): Branin, Hartmann-6, a mixed space (two
reals, an integer, a categorical), and the seed CNN's objective as a surrogate
of real evaluations with the measured seed-to-seed noise (bench/search_cnn.py).
Methods, with the same budgets:

* ``kubetune pN``: ``kubetune.optimizer.suggest`` as the Study calls it, with N
  trials in flight (the oldest finishes first, then the free slot is filled;
  each trial lasts one round, so N trials in flight take budget/N rounds);
  ``quotaQ``: launched into a queue that runs Q at once (the rest wait, their
  points chosen at launch), ``queuedM``: at most M of them waiting
  (``budget.max_queued``; bench/late_binding.py);
* ``gp_minimize``: the notebook's call (EI, 10 initial points, x0 where the
  problem has one);
* ``optuna TPE``: Optuna's default TPESampler, ask/tell, x0 enqueued first;
* ``optuna GP``: Optuna's GPSampler, the same way (it needs torch: ``pip install -e .[bench-gp]``,
  which ``make bench`` does; a smoke run leaves it out);
* ``random``: x0, then uniform draws (log-uniform where the space says so).

The regret after k trials is the true (noise-free) loss of the best point
tried so far minus the known optimum. Seeds drive the optimizers and the
CNN's noise. One cell from the command line:
``python -m bench.search --problem branin --method "kubetune p8" --seeds 20``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.common import KEPT_DATA, PYTHON, REPO, Context, Section, log, machine, table
from bench.kept_runs import KeptRuns, fingerprint, imported
from bench.search_cnn import (
    CACHE_FILE,
    CONFIGS,
    NOISE_CONFIGS,
    TRAIN,
    TRAINS,
    VAL,
    Evaluations,
    Surrogate,
    design,
    surrogate,
)
from bench.search_problems import SYNTHETIC, Problem, cnn_problem
from bench.search_scale import SIZES, scale_table
from bench.suite_tables import TABLES_FILE
from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer
from kubetune.controller.search import gp
from kubetune.controller.search.space import point, skopt_dimensions
from kubetune.spec import (
    ACQ_FUNCS,
    INITIAL_POINT_GENERATORS,
    PENDING_STRATEGIES,
    Budget,
    Categorical,
    Integer,
    OptimizerSettings,
    Real,
    Spec,
)
from tests.fake_trial import succeeded

# Trials per sequential run; parallel runs, and random search (cheap, and the yardstick at equal
# trials), get 1.5x: the goal is parallel 1's quality by then.
BUDGET = 30
SEEDS = 20
STRATEGY_SEEDS = 10
FIT_SMALL = 15  # the subset-fit comparison: the kernel fitted on at most 15 of the trials
CHECKPOINTS = (10, 20, 30, 45)
METHODS = ("kubetune p1", "kubetune p4", "kubetune p8", "gp_minimize", "optuna TPE", "optuna GP", "random")
NEEDS_TORCH = ("optuna GP",)
WORKERS = 2
RIVALS = ("gp_minimize", "optuna TPE", "optuna GP")
KEPT = KEPT_DATA / "kept-runs"  # the shelves of kept runs (bench/kept_runs.py), a file each
KEEP_EVERY = 50  # runs made between writes of the shelves

Run = Callable[[Problem, int, int], list[float]]  # (problem, seed, budget) -> true losses in trial order


def kubetune_run(
    problem: Problem,
    seed: int,
    budget: int,
    parallel: int,
    fit_max: int | None = None,
    wait: bool = False,
    quota: int | None = None,
    max_queued: int | None = None,
    **settings: Any,
) -> list[float]:
    """The Study's loop without the cluster: fill up to ``parallel``, the oldest finishes first.

    ``fit_max`` lowers search.gp.FIT_MAX for this run: the subset fit that
    long studies use, exercised within a short budget. ``wait``: a candidate
    measured, not adopted (bench-only): random points until the initial
    design has finished, as Optuna's n_startup_trials counts. ``quota``: the
    trials launched go through a queue that runs this many at once, the first
    launched first; a launch while the quota has room runs at once, others wait,
    at most ``max_queued`` of them (None: up to ``parallel``). A point is
    chosen at its launch, and all launched trials are pending.
    """
    if fit_max is not None:
        saved, gp.FIT_MAX = gp.FIT_MAX, fit_max
        gp.fitted_gp.cache_clear()  # its key leaves FIT_MAX out
        try:
            return kubetune_run(problem, seed, budget, parallel, wait=wait, quota=quota,
                                max_queued=max_queued, **settings)  # fmt: skip
        finally:
            gp.FIT_MAX = saved
            gp.fitted_gp.cache_clear()
    ask = _waiting(optimizer.suggest) if wait else optimizer.suggest
    spec = Spec(
        space=problem.space,
        x0=problem.x0,
        optimizer=OptimizerSettings(random_state=seed, **settings),
        budget=Budget(max_trials=budget, parallel=parallel),
    )
    room = quota or parallel
    waiting_max = parallel if max_queued is None else max_queued
    finished: list[TrialResult] = []
    running: deque[tuple[int, Params]] = deque()  # admitted (all of them, without a quota)
    waiting: deque[tuple[int, Params]] = deque()  # launched into the queue, not admitted
    while len(finished) < budget:
        while True:
            while waiting and len(running) < room:
                running.append(waiting.popleft())
            launched = [*running, *waiting]
            index = len(finished) + len(launched)
            full = len(running) >= room and len(waiting) >= waiting_max  # the quota, and the queue
            if len(launched) >= parallel or index >= budget or full:
                break
            waiting.append((index, ask(spec, index, finished, [p for _, p in launched])))
        index, params = running.popleft()
        # The spec maximizes (val_accuracy's goal): tell it the negated loss.
        finished.append(succeeded(index, params, "val_accuracy", -problem.observe(params, seed, index)))
    return [problem.truth(r.params) for r in sorted(finished, key=lambda r: r.index)]


def _waiting(suggest: Callable[..., Params]) -> Callable[..., Params]:
    """suggest, but random points until x0 and the initial design have finished, not only started."""

    def ask(spec: Spec, index: int, finished: Sequence[TrialResult], pending: Sequence[Params]) -> Params:
        first_model = len(spec.x0) + spec.optimizer.n_initial_points
        if first_model <= index and len(finished) < first_model:
            return optimizer._unused(spec, index + 1_000_000, pending, {})  # a stream of its own
        return suggest(spec, index, finished, pending)

    return ask


def random_run(problem: Problem, seed: int, budget: int) -> list[float]:
    from skopt.space import Space

    spec = Spec(space=problem.space, x0=problem.x0)
    rows = Space(skopt_dimensions(spec)).rvs(budget - len(problem.x0), random_state=seed)
    return [problem.truth(p) for p in [*problem.x0, *(point(spec, r) for r in rows)]]


def gp_minimize_run(problem: Problem, seed: int, budget: int) -> list[float]:
    from skopt import gp_minimize

    spec = Spec(space=problem.space, x0=problem.x0)
    points: list[Params] = []

    def fitness(row: list[Any]) -> float:
        points.append(point(spec, row))
        return problem.observe(points[-1], seed, len(points) - 1)

    gp_minimize(
        fitness,
        skopt_dimensions(spec),
        acq_func="EI",
        n_calls=budget,
        x0=[[p[d.name] for d in problem.space] for p in problem.x0] or None,
        n_initial_points=min(10, budget - len(problem.x0)),  # fewer only in a smoke run's tiny budget
        random_state=seed,
    )
    return [problem.truth(p) for p in points]


def optuna_run(problem: Problem, seed: int, budget: int, sampler: str) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=getattr(optuna.samplers, sampler)(seed=seed))
    for p in problem.x0:
        study.enqueue_trial(dict(p))
    distributions = {d.name: optuna_distribution(d) for d in problem.space}
    points = []
    for index in range(budget):
        trial = study.ask(distributions)
        points.append(trial.params)
        study.tell(trial, problem.observe(trial.params, seed, index))
    return [problem.truth(p) for p in points]


def installed(methods: Sequence[str], smoke: bool) -> list[str]:
    """The methods to run here: Optuna's GP sampler only where torch is installed, and never in a
    smoke run, which must run the same methods on every machine (CI installs no torch)."""
    torch = not smoke and importlib.util.find_spec("torch") is not None
    return [m for m in methods if torch or m not in NEEDS_TORCH]


def shelves() -> list[KeptRuns]:
    """Shelves for the rivals' runs and for kubetune's (bench/kept_runs.py), each stamped with its
    methods' code, every file that defines a problem of sections 4, 14 and 15 (one stamp for all
    three: they share the files) and the libraries; kubetune's also with every module of its package
    that this file or the fake trial imports, through one another: a change to one reruns its runs,
    never the rivals', and a change to the package's other modules (its CLI, its Kubernetes client)
    reruns none."""
    here = Path(__file__).parent
    names = ("search_problems", "search_cnn", "suite_problems", "suite_tables")
    problems: list[Path | None] = [here / f"{m}.py" for m in names]
    problems += [REPO / "kubetune" / "spec.py", REPO / "kubetune/controller/search/space.py"]
    problems += [CACHE_FILE if collected() else None, TABLES_FILE]
    rivals = fingerprint((gp_minimize_run, optuna_run, optuna_distribution, random_run), problems)
    fake_trial = REPO / "tests" / "fake_trial.py"
    package = [fake_trial, *imported([Path(__file__), fake_trial], REPO / "kubetune")]
    ours = fingerprint((kubetune_run, _waiting, method_run), [*problems, *package])
    return [
        KeptRuns.load(KEPT / "rivals.json", rivals, lambda m: m in (*RIVALS, "random")),
        KeptRuns.load(KEPT / "kubetune.json", ours, lambda m: m.startswith("kubetune ")),
    ]


def optuna_distribution(d: Real | Integer | Categorical) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(d, Real):
        return FloatDistribution(d.low, d.high, log=d.prior == "log-uniform")
    if isinstance(d, Integer):
        return IntDistribution(d.low, d.high)
    return CategoricalDistribution(d.values)


def method_run(method: str) -> tuple[Run, bool]:
    """The run for a method's name, and whether it gets the longer budget (parallel runs, random).

    ``kubetune pN[ STRATEGY][ GENERATOR][ ACQ][ initK][ fitK][ unwarped][ global][ wait][ quotaQ[ queuedM]]``:
    N in flight, the pending strategy, the initial point generator (``sobol``, ``lhs``, ...), the
    acquisition (``gp_hedge``, ...), K initial points, the kernel fitted on at most K trials,
    ``optimizer.warp: none``, ``global`` (``optimizer.trust_region: none``), the ``wait`` candidate,
    a queue's quota and ``budget.max_queued`` (kubetune_run).
    """
    fixed: dict[str, Run] = {
        "gp_minimize": gp_minimize_run,
        "optuna TPE": partial(optuna_run, sampler="TPESampler"),
        "optuna GP": partial(optuna_run, sampler="GPSampler"),
        "random": random_run,
    }
    if method in fixed:
        return fixed[method], method == "random"
    words = method.split()
    if words[0] != "kubetune" or not words[1].startswith("p"):
        raise SystemExit(f"--method: unknown method {method!r}; one of {', '.join(METHODS)}")
    settings: dict[str, Any] = {}
    for word in words[2:]:
        if word in PENDING_STRATEGIES:
            settings["pending"] = word
        elif word in INITIAL_POINT_GENERATORS:
            settings["initial_point_generator"] = word
        elif word in ACQ_FUNCS:
            settings["acq_func"] = word
        elif word.startswith("init"):
            settings["n_initial_points"] = int(word[4:])
        elif word.startswith("fit"):
            settings["fit_max"] = int(word[3:])
        elif word == "unwarped":
            settings["warp"] = "none"
        elif word == "global":
            settings["trust_region"] = "none"
        elif word == "wait":
            settings["wait"] = True
        elif word.startswith("quota"):
            settings["quota"] = int(word[5:])
        elif word.startswith("queued"):
            settings["max_queued"] = int(word[6:])
        else:
            raise SystemExit(f"--method: unknown option {word!r} in {method!r}")
    parallel = int(words[1][1:])
    return partial(kubetune_run, parallel=parallel, **settings), parallel > 1


# --- running the cells ------------------------------------------------------------

_PROBLEMS: dict[str, Problem] = {}  # each worker's, built once: problems hold closures, sent by name


def problem_set(cnn: Surrogate | None) -> dict[str, Problem]:
    return {**SYNTHETIC, **({"cnn": cnn_problem(cnn)} if cnn else {})}


def _worker(cnn: Surrogate | None, more: Callable[[], dict[str, Problem]] | None) -> None:
    _PROBLEMS.update(problem_set(cnn))
    if more is not None:
        _PROBLEMS.update(more())


def _cell(problem: str, method: str, seed: int, budget: int) -> list[float]:
    from threadpoolctl import threadpool_limits

    run, longer = method_run(method)
    with threadpool_limits(limits=1):  # WORKERS processes share 2 cores
        return run(_PROBLEMS[problem], seed, math.ceil(budget * 1.5) if longer else budget)


def run_cells(
    names: Sequence[str],
    methods: Sequence[str],
    seeds: int,
    budget: int,
    cnn: Surrogate | None,
    more: Callable[[], dict[str, Problem]] | None = None,
    workers: int = WORKERS,
    kept: Sequence[KeptRuns] = (),
) -> dict[str, dict[str, list[list[float]]]]:
    """Every (problem, method, seed) run, in ``workers`` processes: {problem: {method: [losses per seed]}}.

    ``more``: a picklable maker of problems beyond section 4's, called once in each worker.
    ``kept``: shelves of runs from earlier benchmark runs (``shelves``), reused and added to.
    Spawned, not forked: the process may hold TensorFlow, whose threads do not survive a fork.
    """
    jobs = [(p, m, s) for p in names for m in methods for s in range(seeds)]
    shelf = {m: next((k for k in kept if k.holds(m)), None) for m in methods}
    done = {job: runs for job in jobs if (k := shelf[job[1]]) and (runs := k.get((*job, budget)))}
    todo = [job for job in jobs if job not in done]
    if kept:
        log(f"search: {len(done)} of {len(jobs)} runs kept from an earlier benchmark")
    if todo:
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, context, initializer=_worker, initargs=(cnn, more)) as pool:
            futures = [pool.submit(_cell, p, m, s, budget) for p, m, s in todo]
            fresh: list[tuple[str, str, int]] = []
            for n, (job, fut) in enumerate(zip(todo, futures, strict=True)):
                done[job] = fut.result()
                fresh.append(job)
                # Kept as they come, not at the end: a benchmark killed after an hour loses minutes.
                if len(fresh) == KEEP_EVERY or n + 1 == len(todo):
                    log(f"search: {n + 1}/{len(todo)} runs")
                    for k in kept:
                        k.keep([((*j, budget), done[j]) for j in fresh if k.holds(j[1])])
                    fresh.clear()
    out: dict[str, dict[str, list[list[float]]]] = {p: {m: [] for m in methods} for p in names}
    for p, m, s in jobs:
        out[p][m].append(done[(p, m, s)])
    return out


# --- statistics -------------------------------------------------------------------


def regret(losses: Sequence[float], optimum: float) -> np.ndarray:
    return np.minimum.accumulate(np.asarray(losses)) - optimum


def trials_to(losses: Sequence[float], optimum: float, target: float) -> int | None:
    hit = np.nonzero(regret(losses, optimum) <= target)[0]
    return int(hit[0]) + 1 if len(hit) else None


def median_iqr(values: Sequence[float]) -> str:
    """The median and interquartile range, as the tables print them: MEDIAN [Q1, Q3]."""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{short(q2)} [{short(q1)}, {short(q3)}]"


def short(v: float) -> str:
    """A number as the tables print it: three significant digits."""
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def parallel_of(method: str) -> int:
    """Trials running at once: ``pN``, or a queue's smaller quota."""
    if not method.startswith("kubetune"):
        return 1
    words = method.split()
    quotas = [int(w[5:]) for w in words if w.startswith("quota")]
    return min([int(words[1][1:]), *quotas])


def problem_table(problem: Problem, runs: dict[str, list[list[float]]]) -> str:
    rows = []
    for method, curves in runs.items():
        budget = min(len(c) for c in curves)
        cells = [
            median_iqr([regret(c, problem.optimum)[k - 1] for c in curves]) if k <= budget else ""
            for k in CHECKPOINTS
        ]
        reached = [trials_to(c, problem.optimum, problem.target) for c in curves]
        hits = [r for r in reached if r is not None]
        p = parallel_of(method)
        to = f"{np.median(hits):.0f} ({len(hits)}/{len(reached)})" if hits else f"- (0/{len(reached)})"
        rounds = f"{np.median([math.ceil(h / p) for h in hits]):.0f}" if hits else "-"
        rows.append([method, *cells, to, rounds])
    header = ["method", *[f"regret after {k}" for k in CHECKPOINTS], "trials to target (runs)", "rounds"]
    return table(header, rows)


BEYOND = (
    "in brackets, how often the verdict would be no with the seeds drawn again, each method's resampled "
    "with replacement 4,000 times (a bootstrap): near 0 or 100 % it stands, near 50 % the seeds decide it."
)


@dataclass(frozen=True)
class Verdict:
    """Whether a goal holds, and how often the seeds, drawn again, would say it does not (``beyond``)."""

    holds: bool
    against: float

    def __str__(self) -> str:
        return f"{'yes' if self.holds else 'no'} ({self.against:.0%})"


class GoalRow(NamedTuple):
    """A goal table's row: the cells it shows, the problem's name first, and the verdicts among them."""

    cells: list[str]
    verdicts: list[Verdict]

    @property
    def problem(self) -> str:
        return self.cells[0]


def versus(
    problem: Problem, runs: dict[str, list[list[float]]], rivals: Sequence[str] = RIVALS
) -> GoalRow | None:
    """Parallel 1 against the rivals after BUDGET trials: no worse than their upper quartile? None
    for a smoke run (a short budget, no torch)."""
    if not {"kubetune p1", *rivals} <= runs.keys() or any(
        len(c) < BUDGET for m in ("kubetune p1", *rivals) for c in runs[m]
    ):
        return None
    verdicts = [no_worse(problem, runs["kubetune p1"], runs[m]) for m in rivals]
    medians = [median_iqr(regrets(problem, runs[m], BUDGET)) for m in ("kubetune p1", *rivals)]
    return GoalRow([problem.name, *medians, *map(str, verdicts)], verdicts)


def regrets(problem: Problem, curves: Sequence[Sequence[float]], k: int) -> list[float]:
    """Each run's regret after k trials."""
    return [float(regret(c, problem.optimum)[k - 1]) for c in curves]


def no_worse(problem: Problem, ours: Sequence[Sequence[float]], theirs: Sequence[Sequence[float]]) -> Verdict:
    """Parallel 1's goal against a rival: our median regret after BUDGET trials no higher than their
    upper quartile."""
    a, b = regrets(problem, ours, BUDGET), regrets(problem, theirs, BUDGET)
    return Verdict(bool(np.median(a) <= np.percentile(b, 75)), beyond(a, b, 75))


def ahead(
    problem: Problem, ours: Sequence[Sequence[float]], random: Sequence[Sequence[float]], k: int
) -> Verdict:
    """Parallel 8's goal: our median regret after k trials lower than random search's."""
    a, b = regrets(problem, ours, k), regrets(problem, random, k)
    return Verdict(bool(np.median(a) < np.median(b)), beyond(a, b, 50, ties=True))


def versus_table(rows: Sequence[GoalRow], rivals: Sequence[str] = RIVALS) -> str:
    """versus()'s rows as a table, its header naming the rivals they were judged against."""
    return table(
        ["problem", "kubetune p1", *rivals, *(f"no worse than {m}" for m in rivals)], [r.cells for r in rows]
    )


def beyond(
    ours: Sequence[float], theirs: Sequence[float], q: float, ties: bool = False, draws: int = 4000
) -> float:
    """How often our median lies above their ``q``-th percentile (at it too, where ``ties``) when
    each method's seeds are drawn again with replacement (a bootstrap): near 0 or 1, the verdict
    would stand with other seeds; near one half, the seeds decide it. The same draws every time:
    the tables do not move."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    medians = np.median(a[rng.integers(0, len(a), (draws, len(a)))], axis=1)
    percentiles = np.percentile(b[rng.integers(0, len(b), (draws, len(b)))], q, axis=1)
    return float(np.mean(medians >= percentiles if ties else medians > percentiles))


def goals(problem: Problem, runs: dict[str, list[list[float]]]) -> GoalRow | None:
    """Parallel 8 against random at BUDGET and 1.5x BUDGET trials, and the trials it needs for
    parallel 1's regret after BUDGET. None without those three methods' runs at full length."""
    seeds = {m: np.array([regret(c, problem.optimum) for c in cs]) for m, cs in runs.items() if m in METHODS}
    med = {m: np.median(curves, axis=0) for m, curves in seeds.items()}
    longer = math.ceil(BUDGET * 1.5)
    if not {"kubetune p1", "kubetune p8", "random"} <= med.keys() or len(med["random"]) < longer:
        return None
    p1, p8, rnd = med["kubetune p1"][BUDGET - 1], med["kubetune p8"], med["random"]
    need = next((k + 1 for k, v in enumerate(p8) if v <= p1), None)
    verdicts = [ahead(problem, runs["kubetune p8"], runs["random"], k) for k in (BUDGET, longer)]
    against = [
        f"{short(p8[k - 1])} vs {short(rnd[k - 1])}: {v}"
        for k, v in zip((BUDGET, longer), verdicts, strict=True)
    ]
    reach = (
        f"{need} ({need / BUDGET:.2f}x), {math.ceil(need / 8)} rounds" if need else f"not within {len(p8)}"
    )
    return GoalRow([problem.name, *against, short(p1), reach], verdicts)


def goals_table(rows: Sequence[GoalRow]) -> str:
    """goals()'s rows as a table, its header naming the trial counts they were judged at."""
    longer = math.ceil(BUDGET * 1.5)
    header = ["problem", f"p8 vs random at {BUDGET}", f"p8 vs random at {longer}", f"p1 at {BUDGET}",
              "p8 reaches it after"]  # fmt: skip
    return table(header, [r.cells for r in rows])


# --- the benchmark ----------------------------------------------------------------


def collected() -> Evaluations | None:
    """The CNN's evaluations cached here where this section's run collected its whole design; None
    where it did not: section 13 collects the design's first configurations only, which make no CNN
    problem for sections 14 and 15 and must not change their kept runs' stamp. The noise
    configurations come first in a collection: the design complete, they are too."""
    f = Evaluations(None, CACHE_FILE)
    return f if all(f.cached(p, 0) is not None for p in design(CONFIGS)) else None


def cnn_surrogate(
    ctx: Context, configs: int = CONFIGS, noise_configs: int = NOISE_CONFIGS
) -> tuple[Surrogate, str]:
    """The CNN's surrogate, after training the evaluations not cached yet (in a child: no TensorFlow here).

    A full run on a fresh machine trains them all (about an hour on 2 cores);
    later runs reuse bench/.cache/search-evaluations.json and train nothing. ``configs`` and
    ``noise_configs``: a prefix of the design (section 13's smaller surrogate).
    """
    from bench.throughput import prepared_data_dir

    path, configs, noise_configs = (
        (ctx.work / "search-evaluations.json", 4, 1) if ctx.smoke else (CACHE_FILE, configs, noise_configs)
    )
    train, val = (512, 256) if ctx.smoke else (TRAIN, VAL)
    args = ["--configs", str(configs), "--noise-configs", str(noise_configs), "--cache", str(path)]
    args += ["--train", str(train), "--val", str(val), "--data-dir", str(prepared_data_dir(ctx))]
    subprocess.run([PYTHON, "-m", "bench.search_cnn", *args], cwd=REPO, check=True)
    f = Evaluations(None, path, train, val)
    s = surrogate(f, configs, noise_configs, minimum=configs)
    line = (
        f"CNN surrogate: a GP's mean over {s.size} real evaluations ({f.setup}, seed 0, a Sobol design "
        f"over the notebook's space), plus Gaussian noise of sd {s.noise_sd:.4f}: the seed-to-seed sd "
        f"(4 seeds) of the {s.noise_configs} configurations that train (mean accuracy >= {TRAINS}) among the "
        f"first {noise_configs} of the design ({s.noise_all:.3f} over all of them: high learning rates and "
        f"deep stacks diverge under some seeds). Its best accuracy {s.best:.4f}, at {s.best_point}."
    )
    return s, line


def run(ctx: Context) -> Section:
    cnn, cnn_line = cnn_surrogate(ctx)
    found = problem_set(cnn)
    budget, seeds, strategy_seeds = (12, 2, 1) if ctx.smoke else (BUDGET, SEEDS, STRATEGY_SEEDS)
    if ctx.smoke:
        found = {k: v for k, v in found.items() if k in ("branin", "cnn")}
    methods = installed(METHODS, ctx.smoke)
    main = run_cells(list(found), methods, seeds, budget, cnn, kept=() if ctx.smoke else shelves())
    # The default strategy's runs are main's p8 runs with the same seeds: reused, not rerun.
    default = OptimizerSettings().pending
    others = [f"kubetune p8 {s}" for s in PENDING_STRATEGIES if s != default]
    tried = [*others, "kubetune p8 unwarped", "kubetune p8 wait"]
    tried_p1 = ["kubetune p1 unwarped", f"kubetune p1 fit{FIT_SMALL}"]
    ran = run_cells(list(found), [*tried, *tried_p1], strategy_seeds, budget, cnn)
    compared = {
        name: {
            f"kubetune p8 {default}": main[name]["kubetune p8"][:strategy_seeds],
            **{m: runs[m] for m in tried},
            "kubetune p1": main[name]["kubetune p1"][:strategy_seeds],
            **{m: runs[m] for m in tried_p1},
        }
        for name, runs in ran.items()
    }
    initial = run_cells(["cnn"], ["kubetune p1 init9"], seeds, budget, cnn)["cnn"]
    initial = {
        "kubetune p1": main["cnn"]["kubetune p1"],
        **initial,
        "gp_minimize": main["cnn"]["gp_minimize"],
    }
    sizes = (50, 100) if ctx.smoke else SIZES
    scale = scale_table(
        {k: found[k] for k in ("cnn", "hartmann6") if k in found}, sizes, 1 if ctx.smoke else 3
    )
    return _section(found, main, compared, initial, scale, budget, seeds, strategy_seeds, cnn_line)


def _section(
    found: dict[str, Problem],
    main: dict[str, dict[str, list[list[float]]]],
    compared: dict[str, dict[str, list[list[float]]]],
    initial: dict[str, list[list[float]]],
    scale: str,
    budget: int,
    seeds: int,
    strategy_seeds: int,
    cnn_line: str,
) -> Section:
    s = Section("search", "4. Search efficiency")
    s.add(
        f"{machine().line()}. {budget} trials per sequential run, {math.ceil(budget * 1.5)} per parallel "
        f"run and random search, {seeds} seeds per method and problem (seeds drive the optimizer and the "
        "CNN's noise). Regret: the true loss of the best point tried so far minus the optimum (for the "
        "CNN, in validation accuracy); median [interquartile range] over seeds. Trials to target: median "
        "over the runs that reached it (how many did); rounds: the same in wall time, trials/parallel. "
        + cnn_line,
        "Rerun one cell: `.venv/bin/python -m bench.search --problem PROBLEM --method METHOD --seeds 20` "
        f"(problems: {', '.join(found)}; methods: {', '.join(METHODS)}, or `kubetune pN STRATEGY`, "
        "`kubetune pN initK`, `kubetune pN fitK`, `kubetune pN unwarped`, `kubetune pN wait`).",
    )
    for name, problem in found.items():
        s.add(f"**{name}** (optimum {problem.optimum:g}, target: regret <= {problem.target:g})")
        s.add(problem_table(problem, main[name]))
    goal_rows = [g for name, problem in found.items() if (g := goals(problem, main[name]))]
    if goal_rows:
        s.add(
            f"**Goals** (medians over seeds): parallel 8 against random at equal trials (is p8's regret "
            f"lower?), and the trials parallel 8 needs to reach parallel 1's {BUDGET}-trial regret (goal: at "
            f"most {math.ceil(BUDGET * 1.5)}, 1.5x); against random, {BEYOND}"
        )
        s.add(goals_table(goal_rows))
    versus_rows = [v for name, problem in found.items() if (v := versus(problem, main[name]))]
    if versus_rows:
        s.add(
            "**Parallel 1 against the notebook's gp_minimize and Optuna's TPE and GP samplers**: regret "
            f"after {BUDGET} trials, and whether kubetune's median is no worse than the rival's upper "
            f"quartile; {BEYOND}"
        )
        s.add(versus_table(versus_rows))
    s.add(
        f"**Pending strategies, warping, a candidate, and the kernel fitted on a subset** ({strategy_seeds} "
        "seeds): what the running trials are told at parallel 8 (`optimizer.pending`); `unwarped`: the GP "
        "always fitted to the losses as they are (`optimizer.warp: none`, kubetune before "
        "kubetune/controller/warping.py) where by default it is fitted to their Yeo-Johnson warping "
        "when its evidence prefers that; `wait`, tried and not adopted (bench-only), draws random points "
        "until the initial design has finished, not only started (as Optuna's n_startup_trials counts); "
        f"and parallel 1 with the kernel's hyperparameters fitted on at most {FIT_SMALL} trials (the rule "
        f"that keeps 1,000-trial studies fast, past search.gp.FIT_MAX = {gp.FIT_MAX}) against the "
        "full fit."
    )
    for name, problem in found.items():
        s.add(f"**{name}**")
        s.add(problem_table(problem, compared[name]))
    s.add(
        f"**Initial points** ({seeds} seeds, CNN, x0 = the notebook's guess): kubetune, like gp_minimize, "
        "does not count x0 in `n_initial_points` (x0 + 10 drawn); `init9` is kubetune's count before "
        "(x0 + 9 drawn). Otherwise parallel 1 runs gp_minimize's algorithm: skopt's GP (Matern 5/2 plus "
        "a fitted noise term, normalized targets, kernel refitted after every trial), EI with xi = 0.01 "
        "over 10,000 random candidates polished by L-BFGS from the best 5; only the random streams differ "
        "(the initial draws, the kernel fit's restarts, the candidates), and, unless `optimizer.warp: "
        "none`, the GP may be fitted to the warped losses."
    )
    s.add(problem_table(found["cnn"], initial))
    s.add(
        "**suggest() at scale** (median of repeats; one for skopt's path; CPU: the process's own seconds, "
        "what it takes with a core to itself):"
    )
    s.add(scale)
    s.data = {"main": main, "compared": compared, "initial": initial, "scale": scale, "cnn_line": cnn_line}
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search", description="one cell of the search benchmark")
    p.add_argument("--problem", required=True, help=f"{', '.join(SYNTHETIC)}, cnn")
    p.add_argument("--method", required=True, help=f"{', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument(
        "--trials", type=int, default=BUDGET, help="sequential budget (parallel runs, random: 1.5x)"
    )
    ns = p.parse_args(argv)
    method_run(ns.method)  # an unknown method fails here, before any work
    if ns.problem not in (*SYNTHETIC, "cnn"):
        p.error(f"--problem: unknown problem {ns.problem!r}")
    cnn = surrogate(Evaluations(None, CACHE_FILE)) if ns.problem == "cnn" else None
    found = problem_set(cnn)
    runs = run_cells([ns.problem], [ns.method], ns.seeds, ns.trials, cnn)
    print(problem_table(found[ns.problem], runs[ns.problem]))
    return 0


if __name__ == "__main__":
    os.nice(10)
    raise SystemExit(main())
