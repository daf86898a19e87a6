"""skopt's three notebook plots, the trials' learning curves and a Pareto front, rendered headless.

The plots see what the optimizer saw: ``search.observations`` as an skopt
``OptimizeResult`` (points and minimised losses), and for the partial
dependence a model fitted on them the way the controller fits one. Figures
are plain ``matplotlib.figure.Figure`` objects, never registered with pyplot,
so a controller rendering after each of 60 trials keeps no figure alive.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

# Before pyplot is imported (skopt.plots imports it): no display on a controller.
matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.optimize import OptimizeResult
from skopt import Optimizer
from skopt import plots as skplots
from skopt.space import Space

from kubetune.contract import TrialResult
from kubetune.controller import objectives
from kubetune.controller.leaderboard import front
from kubetune.controller.optimizer import silence_routine_warnings
from kubetune.controller.search import observations
from kubetune.controller.search.gp import fit_subset
from kubetune.controller.search.space import skopt_dimensions
from kubetune.spec import Spec

# Partial dependence averages the model over random samples: skopt's defaults
# (250 samples, 40 points) take twice as long (0.8 s vs 0.4 s at 60 trials)
# for curves that look the same.
_PD_SAMPLES = 100
_PD_POINTS = 30
_DPI = 100


class NotYet(Exception):
    """A plot that cannot be drawn from the records yet; the message says why."""


def optimize_result(spec: Spec, results: Sequence[TrialResult]) -> OptimizeResult:
    """The observations as the ``OptimizeResult`` skopt's plots read, plus their trial indices."""
    told = [
        (r.index, p, loss)
        for r in sorted(results, key=lambda r: r.index)
        for p, loss in observations(spec, [r])
    ]
    if not told:
        raise NotYet("no successful trial yet")
    xs = [[params[d.name] for d in spec.space] for _, params, _ in told]
    ys = np.array([loss for _, _, loss in told])
    best = int(np.argmin(ys))
    return OptimizeResult(
        x_iters=xs,
        func_vals=ys,
        x=xs[best],
        fun=float(ys[best]),
        space=Space(skopt_dimensions(spec)),
        models=[],
        trial_indices=[index for index, _, _ in told],
    )


def fit_model(spec: Spec, result: OptimizeResult) -> Any:
    """The surrogate the controller would fit on these observations: past
    search.gp.FIT_MAX trials on the same subset, or a 1,000-trial study's redraw
    takes a minute (bench kwok), with no trial launched meanwhile."""
    if len(result.func_vals) < 2:
        raise NotYet("the model needs at least 2 successful trials")
    opt = Optimizer(
        result.space.dimensions,
        base_estimator=spec.optimizer.base_estimator,
        acq_func=spec.optimizer.acq_func,
        n_initial_points=0,
        random_state=spec.optimizer.random_state,
    )
    silence_routine_warnings()
    opt.tell(*fit_subset(list(result.x_iters), list(result.func_vals)))
    if not opt.models:
        raise NotYet("no fitted model")
    return opt.models[-1]


def convergence_png(spec: Spec, result: OptimizeResult) -> bytes:
    """Best objective so far, in the user's direction (accuracy goes up)."""
    fig = Figure(figsize=(8, 5), dpi=_DPI)
    ax = fig.add_subplot()
    skplots.plot_convergence(result, ax=ax)
    sign = -1.0 if spec.objective.goal == "maximize" else 1.0
    indices = result.trial_indices
    # skopt draws the running minimum of the loss against 1..n: flip it back to
    # the metric and put it at the trial indices (failed trials leave gaps).
    for line in ax.get_lines():
        line.set_data(indices, sign * np.asarray(line.get_ydata()))
        line.set_label("best so far")
    ax.scatter(indices, sign * result.func_vals, c="0.6", s=18, zorder=1, label="each trial")
    ax.relim()
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    metric = spec.objective.metric
    ax.set_title(f"Convergence: best {metric} so far ({spec.objective.goal})")
    ax.set_xlabel("trial index")
    ax.set_ylabel(f"best {metric} up to this trial")
    ax.legend(loc="best")
    return _png(fig)


def objective_png(spec: Spec, result: OptimizeResult, model: Any) -> bytes:
    """Partial dependence of the model's loss on each dimension and pair."""
    fig = _grid_figure(result)
    with_model = OptimizeResult(**{**result, "models": [model]})
    skplots.plot_objective(with_model, n_points=_PD_POINTS, n_samples=_PD_SAMPLES, ax=fig.add_subplot())
    _title(fig, f"Partial dependence of {_loss_label(spec)}: lower is better")
    return _png(fig)


def evaluations_png(result: OptimizeResult) -> bytes:
    """Where the optimizer sampled, coloured by order; the star is the best."""
    fig = _grid_figure(result)
    ax = fig.add_subplot()
    varying = _varying(result)
    n = len(result.func_vals)
    if len(varying) == 1:
        # skopt 0.10's plot_evaluations calls .hist on its 1x1 axes array when
        # one dimension varies; its histogram is that same diagonal panel.
        skplots.plot_histogram(result, varying[0], ax=ax)
        _title(fig, f"Evaluations: {n} points")
    else:
        skplots.plot_evaluations(result, ax=ax)
        _title(fig, f"Evaluations: {n} points in trial order (colour); star: the best")
    return _png(fig)


def learning_curves_png(
    metric: str, results: Sequence[TrialResult], curves: Mapping[int, Sequence[float]]
) -> bytes:
    """``metric`` after each epoch, one line per trial; a cross where a stopping rule ended one."""
    if not any(curves.values()):
        raise NotYet("no trial has reported an epoch yet")
    status = {r.index: r.status for r in results}
    colors = {"succeeded": "tab:blue", "pruned": "tab:red", "failed": "0.5"}
    fig = Figure(figsize=(8, 5), dpi=_DPI)
    ax = fig.add_subplot()
    for index, curve in sorted(curves.items()):
        if not curve:
            continue
        state = status.get(index, "running")
        epochs = range(1, len(curve) + 1)
        ax.plot(epochs, curve, color=colors.get(state, "tab:green"), alpha=0.7, lw=1.2)
        if state == "pruned":
            ax.plot(len(curve), curve[-1], "x", color="tab:red", ms=8, mew=2)
    handles = [Line2D([], [], color=c, label=s) for s, c in [*colors.items(), ("running", "tab:green")]]
    handles.append(Line2D([], [], color="tab:red", marker="x", ls="", label="stopped here"))
    ax.legend(handles=handles, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Learning curves: {metric} after each epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    return _png(fig)


def pareto_png(spec: Spec, results: Sequence[TrialResult]) -> bytes:
    """The first two objectives of every trial that has them: the Pareto front joined in its
    order, the other feasible trials as dots, the infeasible apart (crosses)."""
    if len(spec.objectives) < 2:
        raise NotYet("one objective: its front is the best trial (the leaderboard's first)")
    x, y = (o.metric for o in spec.objectives[:2])
    done = [(r, objectives.values(spec, r)) for r in results if r.succeeded]
    points = [(r, v) for r, v in done if v is not None]
    if not points:
        raise NotYet("no successful trial yet")
    members = {r.index for r in front(spec, results)}
    fig = Figure(figsize=(8, 5), dpi=_DPI)
    ax = fig.add_subplot()
    groups = {
        "infeasible": [v for r, v in points if not objectives.feasible(spec, r)],
        "feasible": [v for r, v in points if objectives.feasible(spec, r) and r.index not in members],
        "Pareto front": sorted(v for r, v in points if r.index in members),
    }
    styles = {"infeasible": ("x", "0.6"), "feasible": ("o", "tab:blue"), "Pareto front": ("o", "tab:red")}
    for label, values in groups.items():
        if values:
            marker, color = styles[label]
            ax.scatter(
                [v[0] for v in values], [v[1] for v in values], marker=marker, color=color, label=label
            )
    front_values = groups["Pareto front"]
    ax.plot([v[0] for v in front_values], [v[1] for v in front_values], color="tab:red", lw=1, alpha=0.7)
    ax.legend(loc="best")
    ax.set_title(f"Pareto front: {x} ({spec.objectives[0].goal}) against {y} ({spec.objectives[1].goal})")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return _png(fig)


def _varying(result: OptimizeResult) -> list[int]:
    """The dimensions skopt's matrix plots show: those with more than one value."""
    return [i for i, d in enumerate(result.space.dimensions) if not d.is_constant]


def _loss_label(spec: Spec) -> str:
    metric = spec.objective.metric
    return f"-{metric} (minimised)" if spec.objective.goal == "maximize" else metric


def _title(fig: Figure, text: str) -> None:
    # Above the figure, not in it: skopt puts the diagonal's labels at the top.
    fig.suptitle(text, y=1.0, va="bottom")


def _grid_figure(result: OptimizeResult) -> Figure:
    side = max(5.0, 2.5 * len(_varying(result)))
    return Figure(figsize=(side, side), dpi=_DPI)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
