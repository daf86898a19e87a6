"""``report.html`` and its plots: one self-contained page of what a study has found.

A view, drawn from the records alone (controller.views writes it to the
store; ``kubetune report`` rebuilds it anywhere): the leaderboard, skopt's
plots and the learning curves inlined, timings, failures, lost attempts, the
warm start and the spec, for users without the notebook or Katib. Every
value goes through one escape.
"""

from __future__ import annotations

import base64
import html
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubetune.contract import EpochRecord, TrialResult, WarmStartRecord, plot_object
from kubetune.controller import objectives
from kubetune.controller.best import spread
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import Epochs, Lost
from kubetune.controller.leaderboard import front, infeasible, ranked, reported, summarize, view_metrics
from kubetune.log import get_logger
from kubetune.spec import Spec

log = get_logger("kubetune.report")

# Drawing the plots takes about a second (0.8 s at 8 trials, 0.9 s at 60): the
# study loop decides when to redraw (controller.study.redraw_due).
PLOTS = ("convergence", "objective", "evaluations", "learning_curves")
# Drawn for a study with several objectives or constraints, after the others.
PARETO = "pareto"


def plot_names(spec: Spec) -> tuple[str, ...]:
    return (*PLOTS, PARETO) if spec.multi else PLOTS


# --- plots ----------------------------------------------------------------------


@dataclass
class Figures:
    """PNG bytes by plot name, and for each plot not drawn, why."""

    images: dict[str, bytes] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def draw_figures(spec: Spec, results: Sequence[TrialResult], epochs: Epochs | None = None) -> Figures:
    """Every plot that can be drawn; one that fails leaves a note, not a hole in the study."""
    # skopt and matplotlib: imported only where a report is drawn, so `best` stays light.
    from kubetune.controller import plots

    figures = Figures()
    metric = curve_metric(spec, epochs or {})
    curves = {
        i: [e[n].metrics[metric] for n in sorted(e) if metric in e[n].metrics]
        for i, e in (epochs or {}).items()
    }
    try:
        result = plots.optimize_result(spec, results)
    except plots.NotYet as exc:
        figures.notes = dict.fromkeys(plot_names(spec), str(exc))
        return figures
    draw = {
        "convergence": lambda: plots.convergence_png(spec, result),
        "objective": lambda: plots.objective_png(spec, result, plots.fit_model(spec, result)),
        "evaluations": lambda: plots.evaluations_png(result),
        "learning_curves": lambda: plots.learning_curves_png(metric, results, curves),
        PARETO: lambda: plots.pareto_png(spec, results),
    }
    for name in plot_names(spec):
        try:
            figures.images[name] = draw[name]()
        except plots.NotYet as exc:
            figures.notes[name] = str(exc)
        except Exception as exc:
            log.warning("plot_failed", plot=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
            figures.notes[name] = f"could not be drawn ({type(exc).__name__}: {exc})"
    return figures


def curve_metric(spec: Spec, epochs: Mapping[int, Mapping[int, EpochRecord]]) -> str:
    """The metric the learning curves follow: the objective when trials report it after each
    epoch, else the first metric they do report."""
    seen = reported(e.metrics for records in epochs.values() for e in records.values())
    return spec.objective.metric if spec.objective.metric in seen or not seen else seen[0]


# --- the HTML page ----------------------------------------------------------------

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #1d2330; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d8dce3; }
table { border-collapse: collapse; margin: .5em 0; } .scroll { overflow-x: auto; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e4e7ec; text-align: right; }
th { background: #f3f5f8; } td.text, th.text { text-align: left; } th.group { text-align: center; }
tr.best td { background: #fff4c2; font-weight: 600; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1.5em; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #e4e7ec; }
figcaption, .note { color: #5b6270; } pre { background: #f3f5f8; padding: 1em; overflow: auto; }
"""


def report_html(
    spec: Spec,
    results: Sequence[TrialResult],
    figures: Figures,
    lost: Lost | None = None,
    confirmed: Confirmation | None = None,
    warm: WarmStartRecord | None = None,
    epochs: Epochs | None = None,
    waits: Mapping[int, float] | None = None,
) -> str:
    """The whole report: one page, no external assets, every value escaped. ``waits``: each
    trial's time in a queue, for a study whose trials waited in one."""
    title = f"kubetune study {spec.name}"
    confirmation = ["<h2>Confirmation</h2>", _confirmation(spec, confirmed)] if confirmed else []
    warm_start = ["<h2>Warm start</h2>", _warm_start(warm)] if spec.optimizer.warm_start else []
    sections = [
        f"<h1>{_e(title)}</h1>",
        _summary(spec, results),
        *confirmation,
        "<h2>Leaderboard</h2>",
        _leaderboard(spec, results, epochs),
        *(["<h2>Pareto front</h2>", _front(spec, results)] if spec.multi else []),
        "<h2>Plots</h2>",
        _plots(figures, plot_names(spec)),
        *warm_start,
        "<h2>Trial timings</h2>",
        _timings(results, waits or {}),
        "<h2>Failed and stopped trials</h2>",
        _failures(spec, results),
        "<h2>Attempts lost to the infrastructure (launched again)</h2>",
        _lost(lost or {}),
        "<h2>Spec</h2>",
        f"<pre>{_e(spec.to_yaml())}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def _summary(spec: Spec, results: Sequence[TrialResult]) -> str:
    s = summarize(spec, results)
    best = (
        f"best {_e(spec.objective.metric)} {_e(cell(s.best.objective_value))} (trial {_e(s.best.index)})"
        if s.best
        else "no successful trial yet"
    )
    return (
        f"<p>Objective: {_e(spec.objective.goal)} {_e(spec.objective.metric)}. "
        f"{_e(s.total)} of {_e(spec.budget.max_trials)} trials finished: {_e(s.succeeded)} succeeded, "
        f"{_e(s.failed)} failed, {_e(s.pruned)} stopped early; {best}.</p>"
    )


def _confirmation(spec: Spec, confirmed: Confirmation) -> str:
    """The top configurations' spread over fresh runs; the held-out metrics of the winner alone."""
    if not confirmed.started:
        return (
            '<p class="note">Not started: the top configurations are trained again once the search ends.</p>'
        )
    metric = spec.objective.metric
    winner = confirmed.winner
    names = [d.name for d in spec.space]
    held_out = list(spec.kind.held_out)
    head = ["trial", *names, "runs", f"mean {metric}", "sd", "min", "max", f"search {metric}", *held_out]
    rows = []
    for c in confirmed.candidates:
        won = c is winner
        means = c.mean_metrics() if won else {}
        stats = [spread(c)[k] for k in ("mean", "sd", "min", "max")]
        params = [c.trial.params.get(n) for n in names]
        cells = [c.trial.index, *params, f"{c.n}/{c.planned}", *stats, c.trial.objective_value,
                 *(means.get(m) for m in held_out)]  # fmt: skip
        attrs = ' id="winner" class="best"' if won else ""
        rows.append(f"<tr{attrs}>{''.join(_td(v) for v in cells)}</tr>")
    # The kind's words: a seed varied, or a program run again as it is (its own randomness).
    seeds = [s for s in confirmed.seeds if s is not None]
    how = (
        f"each trained again with seeds {', '.join(map(str, seeds))}"
        if seeds
        else f"each run again {len(confirmed.seeds)} times as it is (the trials have no seed to vary)"
    )
    shown = f"; its {', '.join(held_out)} the study's result" if held_out else ""
    progress = (
        f"The winner (highlighted) has the best mean {metric}{shown}."
        if winner
        else f"{confirmed.finished} of {confirmed.total} runs finished."
    )
    text = f"The top {len(confirmed.candidates)} configurations of the search, {how}. {progress}"
    return f"<p>{_e(text)}</p>" + _table(head, rows)


def _leaderboard(spec: Spec, results: Sequence[TrialResult], epochs: Epochs | None) -> str:
    """The feasible succeeded trials ranked, best first; below them, those that broke a constraint."""
    done = ranked(spec, results)
    apart = infeasible(spec, results)
    if not done and not apart:
        return '<p class="note">No successful trial yet.</p>'
    names = [d.name for d in spec.space]
    metrics = view_metrics(spec, results, epochs)
    head = ["rank", "trial", spec.objective.metric, *names, *metrics, "wall time (s)"]
    groups = [("", 3), ("parameters", len(names)), ("metrics", len(metrics)), ("", 1)]
    rows = []
    for rank, r in [*enumerate(done, 1), *(("infeasible", r) for r in apart)]:
        cells = [rank, r.index, r.objective_value, *(r.params.get(n) for n in names),
                 *(r.metrics.get(m) for m in metrics), r.wall_time_s]  # fmt: skip
        attrs = ' id="best" class="best"' if rank == 1 else ""
        rows.append(f"<tr{attrs}>{''.join(_td(c) for c in cells)}</tr>")
    return f'<div class="scroll">{_table(head, rows, groups=groups)}</div>'


def _front(spec: Spec, results: Sequence[TrialResult]) -> str:
    """The Pareto front of the feasible trials, best first by the first objective."""
    members = front(spec, results)
    if not members:
        return '<p class="note">No feasible trial has succeeded yet.</p>'
    head = ["trial", *(f"{o.metric} ({o.goal})" for o in spec.objectives), *(d.name for d in spec.space)]
    rows = [
        "<tr>" + _td(r.index) + "".join(_td(v) for v in objectives.values(spec, r) or ())
        + "".join(_td(r.params.get(d.name)) for d in spec.space) + "</tr>"
        for r in members
    ]  # fmt: skip
    broke = f"{len(infeasible(spec, results))} succeeded trials broke a constraint (listed last above)."
    note = f'<p class="note">{_e(broke)}</p>' if spec.constraints else ""
    return f"<p>{_e(len(members))} trials on the front.</p>" + _table(head, rows) + note


def _plots(figures: Figures, names: Sequence[str] = PLOTS) -> str:
    parts = []
    for name in names:
        png = figures.images.get(name)
        if png is None:
            note = figures.notes.get(name, "not drawn")
            parts.append(f'<p class="note">{_e(name.capitalize())} plot: {_e(note)}.</p>')
            continue
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        parts.append(
            f'<figure><img src="{_e(uri)}" alt="{_e(name)} plot">'
            f"<figcaption>{_e(plot_object(name))}</figcaption></figure>"
        )
    return f'<div class="plots">{"".join(parts)}</div>'


def _warm_start(warm: WarmStartRecord | None) -> str:
    """What the optimizer was told before the first point, from where; what was left out and why."""
    if warm is None:
        return '<p class="note">Not read yet: the controller reads the stores when the study starts.</p>'
    rows = [
        f"<tr>{_td(uri, text=True)}{_td(told)}{_td(_why(warm.left_out.get(uri, {})), text=True)}</tr>"
        for uri, told in warm.told.items()
    ]
    return f"<p>{_e(warm.total)} earlier trials told first.</p>" + _table(
        ["store", "trials told", "left out"], rows, text=["store", "left out"]
    )


def _why(left_out: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in left_out.items()) or "none"


def _timings(results: Sequence[TrialResult], waits: Mapping[int, float]) -> str:
    """Each finished trial's wall time, and its wait in the queue when the study had one."""
    if not results:
        return '<p class="note">No trial has finished yet.</p>'
    rows = [
        f"<tr>{_td(r.index)}{_td(r.status, text=True)}{_td(r.wall_time_s)}"
        + (_td(waits.get(r.index)) if waits else "")
        + "</tr>"
        for r in sorted(results, key=lambda r: r.index)
    ]
    walls = [r.wall_time_s for r in results if r.wall_time_s is not None]
    total = f"<p>Total trial wall time: {_e(cell(sum(walls)))} s.</p>" if walls else ""
    if waits:
        queued = sorted(waits.values())
        n, median, longest = _e(len(queued)), _e(cell(statistics.median(queued))), _e(cell(queued[-1]))
        total += f"<p>{n} trials waited in the queue: median {median} s, longest {longest} s.</p>"
    head = ["trial", "status", "wall time (s)", *(["queue wait (s)"] if waits else [])]
    return _table(head, rows, text=["status"]) + total


def _failures(spec: Spec, results: Sequence[TrialResult]) -> str:
    failed = sorted((r for r in results if not r.succeeded), key=lambda r: r.index)
    if not failed:
        return '<p class="note">No failed or stopped trials.</p>'
    names = [d.name for d in spec.space]
    rows = [
        f"<tr>{_td(r.index)}{_td(r.status, text=True)}{''.join(_td(r.params.get(n)) for n in names)}"
        f"{_td(r.reason, text=True)}</tr>"
        for r in failed
    ]
    return _table(["trial", "status", *names, "reason"], rows, text=["status", "reason"])


def _lost(lost: Lost) -> str:
    rows = [
        f"<tr>{_td(a.index)}{_td(a.attempt + 1)}{_td(a.cause, text=True)}"
        f"{_td(round((a.ended_at - a.started_at) / 60, 1))}{_td(a.reason, text=True)}</tr>"
        for index in sorted(lost)
        for a in lost[index]
    ]
    if not rows:
        return '<p class="note">No attempt lost.</p>'
    return _table(["trial", "attempt", "cause", "minutes", "reason"], rows, text=["cause", "reason"])


def _table(
    head: Sequence[str],
    rows: Sequence[str],
    *,
    text: Sequence[str] = (),
    groups: Sequence[tuple[str, int]] = (),
) -> str:
    """A table; ``groups``: a header row above ``head``, each (title, columns spanned)."""
    ths = "".join(f'<th class="text">{_e(h)}</th>' if h in text else f"<th>{_e(h)}</th>" for h in head)
    above = "".join(f'<th class="group" colspan="{n}">{_e(g)}</th>' for g, n in groups if n)
    heads = (f"<tr>{above}</tr>" if groups else "") + f"<tr>{ths}</tr>"
    return f"<table>\n<thead>{heads}</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def _td(value: object, *, text: bool = False) -> str:
    shown = "—" if value is None else cell(value)
    return f'<td class="text">{_e(shown)}</td>' if text else f"<td>{_e(shown)}</td>"


def cell(v: object) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def _e(value: object) -> str:
    """Every value a page shows goes through here: escaped, and its control characters dropped."""
    return html.escape(printable(str(value)), quote=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without control characters (a terminal's escape sequences, say), tabs and newlines kept:
    what a trial wrote is shown, never obeyed."""
    return _CONTROL.sub("", text)
