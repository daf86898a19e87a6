"""suggest() at scale: its time at 100 to 1,000 finished trials, against skopt's tell/ask on the same history.

The history is random points of the space with their true losses, the
trials in flight are 8 more random points. "new history" is the first ask
after a trial finished (the kernel is fitted), on each of the two turns the
asks take (kubetune/controller/search/gp.py): the trust region's, and the
whole space's, which fits the kernel a third time, with the length scales'
prior (7 in flight: the other parity). "same wave" is the next ask before
another trial finishes (the fitted kernel is reused). skopt's plain path is
what suggest() did before: an Optimizer told every point, then asked, with
skopt's own variance sum. The table alone: ``python -m bench.search_scale``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

from threadpoolctl import threadpool_limits

from bench.common import table
from bench.search_problems import Problem
from kubetune.contract import Params, TrialResult
from kubetune.controller import optimizer, search
from kubetune.controller.search import gp
from kubetune.controller.search.space import point, row, skopt_dimensions
from kubetune.spec import OptimizerSettings, Spec
from tests.fake_trial import succeeded

SIZES = (100, 200, 500, 1000)
IN_FLIGHT = 8


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds: on a shared machine the wall time includes waiting for a core."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _history(problem: Problem, n: int) -> tuple[Spec, list[TrialResult], list[Params]]:
    from skopt.space import Space

    spec = Spec(space=problem.space, x0=(), optimizer=OptimizerSettings(random_state=0))
    rows = Space(skopt_dimensions(spec)).rvs(n + IN_FLIGHT, random_state=1)
    points = [point(spec, r) for r in rows]
    finished = [succeeded(i, p, "val_accuracy", -problem.truth(p)) for i, p in enumerate(points[:n])]
    return spec, finished, points[n:]


def _new_history(spec: Spec, finished: list[TrialResult], pending: list[Params]) -> None:
    gp.fitted_gp.cache_clear()
    optimizer.suggest(spec, len(finished), finished, pending)


def _same_wave(spec: Spec, finished: list[TrialResult], pending: list[Params]) -> None:
    optimizer.suggest(spec, len(finished) + 1, finished, pending)


def _skopt_plain(spec: Spec, finished: list[TrialResult], pending: list[Params]) -> None:
    from skopt import Optimizer

    observed = search.observations(spec, finished)
    xs = [row(spec, p) for p, _ in observed] + [row(spec, p) for p in pending]
    ys = [y for _, y in observed]
    opt = Optimizer(skopt_dimensions(spec), n_initial_points=0, acq_func="EI", random_state=0)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        opt.tell(xs, ys + [min(ys)] * len(pending))
        opt.ask()


def scale_table(problems: dict[str, Problem], sizes: tuple[int, ...], repeats: int) -> str:
    rows = []
    for name, problem in problems.items():
        for n in sizes:
            spec, finished, pending = _history(problem, n)

            local, local_cpu = _timed(partial(_new_history, spec, finished, pending), repeats)
            whole, whole_cpu = _timed(partial(_new_history, spec, finished, pending[1:]), repeats)
            wave, _ = _timed(partial(_same_wave, spec, finished, pending), repeats)
            plain, _ = _timed(partial(_skopt_plain, spec, finished, pending), 1)
            slower = max(local, whole)
            rows.append([name, n, f"{local:.2f}", f"{local_cpu:.2f}", f"{whole:.2f}", f"{whole_cpu:.2f}",
                         f"{wave:.2f}", f"{plain:.2f}", f"{plain / slower:.1f}x"])  # fmt: skip
    header = ["space", "finished trials", "trust region's turn: new history (s)", "its CPU (s)",
              "whole space's turn: new history (s)", "its CPU (s)", "same wave (s)", "skopt tell+ask (s)",
              "speed-up (slower turn)"]  # fmt: skip
    return table(header, rows)


def main() -> int:
    """The table alone, on the search benchmark's problems: ``python -m bench.search_scale``.

    The CNN's space where its evaluations are cached here (section 4), the mixed one's otherwise.
    """
    from bench.search_cnn import CACHE_FILE, Evaluations, surrogate
    from bench.search_problems import SYNTHETIC, cnn_problem

    problems = {
        **(
            {"cnn": cnn_problem(surrogate(Evaluations(None, CACHE_FILE)))}
            if CACHE_FILE.exists()
            else {"mixed": SYNTHETIC["mixed"]}
        ),
        "hartmann6": SYNTHETIC["hartmann6"],
    }
    print(scale_table(problems, SIZES, 3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
