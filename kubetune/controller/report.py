"""What a study has found, derived from the trial records alone.

``best.json``, ``history.csv``, ``report.html`` and ``plots/*.png`` are views:
rewritten after every trial, rebuilt from the records on any machine with
access to the store, never read back as truth. The report is one
self-contained page (plots inlined) for users without the notebook or Katib.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubetune.contract import (
    BEST_OBJECT,
    HISTORY_OBJECT,
    MODEL_OBJECT,
    REPORT_OBJECT,
    EpochRecord,
    TrialResult,
    plot_object,
)
from kubetune.controller.history import Epochs, Lost
from kubetune.log import get_logger
from kubetune.spec import Spec
from kubetune.store import Store

if TYPE_CHECKING:  # it ranks with this module's ranked()
    from kubetune.controller.confirmation import Candidate, Confirmation

log = get_logger("kubetune.report")

# Drawing the plots takes about a second (0.8 s at 8 trials, 0.9 s at 60): the
# study loop decides when to redraw (controller.study.redraw_due).
PLOTS = ("convergence", "objective", "evaluations", "learning_curves")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
# The leaderboard fits a laptop screen: training metrics are in history.csv only.
LEADERBOARD_METRICS = METRICS[2:]


@dataclass(frozen=True)
class Summary:
    total: int
    succeeded: int
    failed: int
    best: TrialResult | None
    pruned: int = 0
    ended_by: str | None = None  # a budget besides max_trials that stopped new trials


def ranked(spec: Spec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """The succeeded trials, best first; ties go to the earliest index."""
    done = [r for r in results if r.succeeded and r.objective_value is not None]
    sign = -1.0 if spec.objective.goal == "maximize" else 1.0
    return sorted(done, key=lambda r: (sign * (r.objective_value or 0.0), r.index))


def best_of(spec: Spec, results: Sequence[TrialResult]) -> TrialResult | None:
    """The best succeeded trial; ties go to the earliest index."""
    order = ranked(spec, results)
    return order[0] if order else None


def summarize(spec: Spec, results: Sequence[TrialResult]) -> Summary:
    count = Counter(r.status for r in results)
    return Summary(len(results), count["succeeded"], count["failed"], best_of(spec, results), count["pruned"])


def best_document(
    spec: Spec,
    results: Sequence[TrialResult],
    ended_by: str | None = None,
    confirmed: Confirmation | None = None,
) -> dict[str, Any]:
    """The best search trial; once a confirmation phase is complete, its winner (the search's best
    then under ``search_best``), and while one runs, its progress (``confirmation``)."""
    s = summarize(spec, results)
    doc: dict[str, Any] = {
        "study": spec.name,
        "objective": {"metric": spec.objective.metric, "goal": spec.objective.goal},
        "trials": {"finished": s.total, "succeeded": s.succeeded, "failed": s.failed, "pruned": s.pruned},
        "best": None,
    }
    if ended_by is not None:
        doc["ended_by"] = ended_by
    if s.best is not None:
        b = s.best
        doc["best"] = {
            "index": b.index,
            "value": b.objective_value,
            "params": spec.full_params(b.params),
            "metrics": b.metrics,
            "wall_time_s": b.wall_time_s,
        }
    if confirmed is not None and confirmed.started:
        doc["confirmation"] = _confirmation_document(spec, confirmed)
        winner = _confirmed_best(spec, confirmed)
        if winner is not None:
            doc["search_best"], doc["best"] = doc["best"], winner
    return doc


def _confirmation_document(spec: Spec, confirmed: Confirmation) -> dict[str, Any]:
    """Each configuration's spread over its runs; no test metrics (they never choose)."""
    winner = confirmed.winner
    return {
        "top_k": spec.confirm.top_k,
        "seeds": list(confirmed.seeds),
        "finished": confirmed.finished,
        "total": confirmed.total,
        "winner": winner.trial.index if winner else None,
        "configs": [
            {
                "index": c.trial.index,
                "search_value": c.trial.objective_value,
                "params": spec.full_params(c.trial.params),
                "runs": [r.index for r in c.runs],
                **_spread(c),
            }
            for c in confirmed.candidates
        ],
    }


def _spread(c: Candidate) -> dict[str, Any]:
    values = c.values
    return {"n": c.n, "mean": c.mean, "sd": c.sd, "min": min(values, default=None),
            "max": max(values, default=None)}  # fmt: skip


def _confirmed_best(spec: Spec, confirmed: Confirmation) -> dict[str, Any] | None:
    """The winner: its mean metrics (its test ones the study's headline), spread and model."""
    winner = confirmed.winner
    if winner is None:
        return None
    run = winner.best_run()
    doc: dict[str, Any] = {
        "index": winner.trial.index,
        "value": winner.mean,
        "params": spec.full_params(winner.trial.params),
        "metrics": winner.mean_metrics(),
        "confirmed": {**_spread(winner), "runs": [r.index for r in winner.runs]},
    }
    if run is not None and spec.kind.saves_model:
        doc["model"] = {"object": MODEL_OBJECT, "run": run.index, "metrics": run.metrics}
    return doc


def history_csv(spec: Spec, results: Sequence[TrialResult], epochs: Epochs | None = None) -> str:
    """One row per trial, in index order, for a spreadsheet; a running one at its latest epoch."""
    names = [d.name for d in spec.space]
    metrics = METRICS
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["index", "status", "epoch", "objective", *names, *metrics, "wall_time_s", "images_per_s", "reason"]
    )
    rows = {r.index: _row(r, names, metrics) for r in results}
    for index, latest in running_epochs(results, epochs or {}).items():
        cells = [_cell(latest.metrics.get(spec.objective.metric)), *([""] * len(names))]
        values = [_cell(latest.metrics.get(m)) for m in metrics]
        rows[index] = [index, "running", latest.epoch, *cells, *values, "", "", ""]
    w.writerows(rows[i] for i in sorted(rows))
    return buf.getvalue()


def _row(r: TrialResult, names: list[str], metrics: Sequence[str]) -> list[object]:
    return [
        r.index,
        r.status,
        _cell(r.last_epoch),
        _cell(r.objective_value),
        *(_cell(r.params.get(n)) for n in names),
        *(_cell(r.metrics.get(m)) for m in metrics),
        _cell(r.wall_time_s),
        _cell(r.images_per_s),
        r.reason or "",
    ]


def running_epochs(results: Sequence[TrialResult], epochs: Epochs) -> dict[int, EpochRecord]:
    """The latest epoch record of each trial that has reported one and has no result yet."""
    done = {r.index for r in results}
    return {i: e[max(e)] for i, e in epochs.items() if e and i not in done}


def _cell(v: object) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def publish(
    store: Store,
    spec: Spec,
    results: Sequence[TrialResult],
    *,
    epochs: Epochs | None = None,
    plots: bool = True,
    ended_by: str | None = None,
    lost: Lost | None = None,
    confirmed: Confirmation | None = None,
) -> None:
    """Rewrite the views after a trial finished; the report and its plots only if ``plots``."""
    doc = best_document(spec, results, ended_by, confirmed)
    store.put(BEST_OBJECT, (json.dumps(doc, indent=2) + "\n").encode())
    store.put(HISTORY_OBJECT, history_csv(spec, results, epochs).encode())
    if plots:
        redraw(store, spec, results, epochs, lost, confirmed)


def redraw(
    store: Store,
    spec: Spec,
    results: Sequence[TrialResult],
    epochs: Epochs | None = None,
    lost: Lost | None = None,
    confirmed: Confirmation | None = None,
) -> None:
    """The plots and report.html; a failure is logged: the report is a view, a study never fails for it."""
    try:
        publish_report(store, spec, results, epochs, lost, confirmed)
    except Exception as exc:
        log.warning("report_failed", error=f"{type(exc).__name__}: {exc}", exc_info=True)


def publish_report(
    store: Store,
    spec: Spec,
    results: Sequence[TrialResult],
    epochs: Epochs | None = None,
    lost: Lost | None = None,
    confirmed: Confirmation | None = None,
) -> None:
    figures = draw_figures(spec, results, epochs)
    for name, png in figures.images.items():
        store.put(plot_object(name), png)
    store.put(REPORT_OBJECT, report_html(spec, results, figures, lost, confirmed).encode())


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
    curves = {i: _curve(spec, e) for i, e in (epochs or {}).items()}
    try:
        result = plots.optimize_result(spec, results)
    except plots.NotYet as exc:
        figures.notes = dict.fromkeys(PLOTS, str(exc))
        return figures
    draw = {
        "convergence": lambda: plots.convergence_png(spec, result),
        "objective": lambda: plots.objective_png(spec, result, plots.fit_model(spec, result)),
        "evaluations": lambda: plots.evaluations_png(result),
        "learning_curves": lambda: plots.learning_curves_png(spec, results, curves),
    }
    for name in PLOTS:
        try:
            figures.images[name] = draw[name]()
        except plots.NotYet as exc:
            figures.notes[name] = str(exc)
        except Exception as exc:
            log.warning("plot_failed", plot=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
            figures.notes[name] = f"could not be drawn ({type(exc).__name__}: {exc})"
    return figures


def _curve(spec: Spec, epochs: Mapping[int, EpochRecord]) -> list[float]:
    metric = spec.objective.metric
    return [epochs[e].metrics[metric] for e in sorted(epochs) if metric in epochs[e].metrics]


# --- the HTML page ----------------------------------------------------------------

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #1d2330; }
h1 { margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d8dce3; }
table { border-collapse: collapse; margin: .5em 0; } .scroll { overflow-x: auto; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e4e7ec; text-align: right; }
th { background: #f3f5f8; } td.text, th.text { text-align: left; }
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
) -> str:
    """The whole report: one page, no external assets, every value escaped."""
    title = f"kubetune study {spec.name}"
    confirmation = ["<h2>Confirmation</h2>", _confirmation(spec, confirmed)] if confirmed else []
    sections = [
        f"<h1>{_e(title)}</h1>",
        _summary(spec, results),
        *confirmation,
        "<h2>Leaderboard</h2>",
        _leaderboard(spec, results),
        "<h2>Plots</h2>",
        _plots(figures),
        "<h2>Trial timings</h2>",
        _timings(results),
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
        f"best {_e(spec.objective.metric)} {_e(_cell(s.best.objective_value))} (trial {s.best.index})"
        if s.best
        else "no successful trial yet"
    )
    return (
        f"<p>Objective: {_e(spec.objective.goal)} {_e(spec.objective.metric)}. "
        f"{s.total} of {spec.budget.max_trials} trials finished: {s.succeeded} succeeded, "
        f"{s.failed} failed, {s.pruned} stopped early; {best}.</p>"
    )


def _confirmation(spec: Spec, confirmed: Confirmation) -> str:
    """The top configurations' spread over fresh seeds; the test accuracy of the winner alone."""
    if not confirmed.started:
        return (
            '<p class="note">Not started: the top configurations are trained again once the search ends.</p>'
        )
    metric = spec.objective.metric
    winner = confirmed.winner
    names = [d.name for d in spec.space]
    head = [
        "trial",
        *names,
        "runs",
        f"mean {metric}",
        "sd",
        "min",
        "max",
        f"search {metric}",
        "test accuracy",
    ]
    rows = []
    for c in confirmed.candidates:
        spread = _spread(c)
        won = c is winner
        test = c.mean_metrics().get("test_accuracy") if won else None
        stats = [spread[k] for k in ("mean", "sd", "min", "max")]
        params = [c.trial.params.get(n) for n in names]
        cells = [c.trial.index, *params, f"{c.n}/{c.planned}", *stats, c.trial.objective_value, test]
        attrs = ' id="winner" class="best"' if won else ""
        rows.append(f"<tr{attrs}>{''.join(_td(v) for v in cells)}</tr>")
    seeds = ", ".join("as is" if s is None else str(s) for s in confirmed.seeds)
    progress = (
        f"The winner (highlighted) has the best mean {_e(metric)}; its test accuracy is the study's result."
        if winner
        else f"{confirmed.finished} of {confirmed.total} runs finished."
    )
    return (
        f"<p>The top {len(confirmed.candidates)} configurations of the search, each trained again with seeds "
        f"{_e(seeds)}. {progress}</p>" + _table(head, rows)
    )


def _leaderboard(spec: Spec, results: Sequence[TrialResult]) -> str:
    done = ranked(spec, results)
    if not done:
        return '<p class="note">No successful trial yet.</p>'
    names = [d.name for d in spec.space]
    metrics = [
        m for m in LEADERBOARD_METRICS if m != spec.objective.metric and any(m in r.metrics for r in done)
    ]
    head = ["rank", "trial", spec.objective.metric, *names, *metrics, "wall time (s)", "images/s"]
    rows = []
    for rank, r in enumerate(done, 1):
        cells = [
            rank,
            r.index,
            r.objective_value,
            *(r.params.get(n) for n in names),
            *(r.metrics.get(m) for m in metrics),
            r.wall_time_s,
            r.images_per_s,
        ]
        attrs = ' id="best" class="best"' if rank == 1 else ""
        rows.append(f"<tr{attrs}>{''.join(_td(c) for c in cells)}</tr>")
    return f'<div class="scroll">{_table(head, rows)}</div>'


def _plots(figures: Figures) -> str:
    parts = []
    for name in PLOTS:
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


def _timings(results: Sequence[TrialResult]) -> str:
    if not results:
        return '<p class="note">No trial has finished yet.</p>'
    rows = [
        f"<tr>{_td(r.index)}{_td(r.status, text=True)}{_td(r.wall_time_s)}{_td(r.images_per_s)}</tr>"
        for r in sorted(results, key=lambda r: r.index)
    ]
    walls = [r.wall_time_s for r in results if r.wall_time_s is not None]
    total = f"<p>Total trial wall time: {_e(_cell(sum(walls)))} s.</p>" if walls else ""
    return _table(["trial", "status", "wall time (s)", "images/s"], rows, text=["status"]) + total


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


def _table(head: Sequence[str], rows: Sequence[str], *, text: Sequence[str] = ()) -> str:
    ths = "".join(f'<th class="text">{_e(h)}</th>' if h in text else f"<th>{_e(h)}</th>" for h in head)
    return f"<table>\n<thead><tr>{ths}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def _td(value: object, *, text: bool = False) -> str:
    shown = "—" if value is None else _cell(value)
    return f'<td class="text">{_e(shown)}</td>' if text else f"<td>{_e(shown)}</td>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
