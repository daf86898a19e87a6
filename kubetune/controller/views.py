"""The store's views, rewritten from the records after every trial: best.json, history.csv, the report.

Views are never read back as truth: any machine with access to the store
rebuilds them from the records (``kubetune report`` does).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from kubetune.contract import (
    BEST_OBJECT,
    HISTORY_OBJECT,
    REPORT_OBJECT,
    TrialResult,
    WarmStartRecord,
    plot_object,
)
from kubetune.controller import objectives, report
from kubetune.controller.best import best_document
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import Epochs, Lost
from kubetune.controller.leaderboard import front, metric_columns, running_epochs
from kubetune.controller.report import cell
from kubetune.log import get_logger
from kubetune.spec import Spec
from kubetune.store import Store

log = get_logger("kubetune.views")

# history.csv's column prefixes: a parameter and a metric may share a name (a program's `loss`).
PARAM = "param."
METRIC = "metric."


def history_csv(
    spec: Spec,
    results: Sequence[TrialResult],
    epochs: Epochs | None = None,
    waits: Mapping[int, float] | None = None,
) -> str:
    """One row per trial, in index order, for a spreadsheet; a running one at its latest epoch.

    Parameters and metrics are columns of their own, prefixed ``param.`` and
    ``metric.``; the metrics are every one reported (the kind's first). A
    study whose trials waited in a queue has their waits (``queue_wait_s``).
    One with several objectives or constraints says, after ``objective``,
    whether each finished trial is on the Pareto front (``pareto``) and keeps
    the constraints (``feasible``).
    """
    names = [d.name for d in spec.space]
    metrics = metric_columns(spec, results, epochs, every=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    queue = ["queue_wait_s"] if waits else []
    marks = ["pareto", "feasible"] if spec.multi else []
    on_front = {r.index for r in front(spec, results)}
    w.writerow(["index", "status", "epoch", "objective", *marks, *(PARAM + n for n in names),
                *(METRIC + m for m in metrics), "wall_time_s", *queue, "reason"])  # fmt: skip
    rows = {
        r.index: [r.index, r.status, cell(r.last_epoch), cell(r.objective_value), *_marks(spec, r, on_front),
                  *(cell(r.params.get(n)) for n in names), *(cell(r.metrics.get(m)) for m in metrics),
                  cell(r.wall_time_s), r.reason or ""]
        for r in results
    }  # fmt: skip
    for index, latest in running_epochs(results, epochs).items():
        objective = cell(latest.metrics.get(spec.objective.metric))
        rows[index] = [index, "running", latest.epoch, objective, *([""] * (len(marks) + len(names))),
                       *(cell(latest.metrics.get(m)) for m in metrics), "", ""]  # fmt: skip
    if waits:
        for index, row in rows.items():
            row.insert(-1, cell(waits.get(index)))
    w.writerows(rows[i] for i in sorted(rows))
    return buf.getvalue()


def _marks(spec: Spec, r: TrialResult, on_front: set[int]) -> list[str]:
    """A multi-objective study's ``pareto`` and ``feasible`` cells; none for one objective alone."""
    if not spec.multi:
        return []
    if r.failed:
        return ["", ""]
    return [str(r.index in on_front).lower(), str(objectives.feasible(spec, r)).lower()]


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
    warm: WarmStartRecord | None = None,
    waits: Mapping[int, float] | None = None,
) -> None:
    """Rewrite the views after a trial finished; the report and its plots only if ``plots``."""
    doc = best_document(spec, results, ended_by, confirmed)
    store.put(BEST_OBJECT, (json.dumps(doc, indent=2) + "\n").encode())
    store.put(HISTORY_OBJECT, history_csv(spec, results, epochs, waits).encode())
    if plots:
        redraw(store, spec, results, epochs, lost, confirmed, warm, waits)


def redraw(
    store: Store,
    spec: Spec,
    results: Sequence[TrialResult],
    epochs: Epochs | None = None,
    lost: Lost | None = None,
    confirmed: Confirmation | None = None,
    warm: WarmStartRecord | None = None,
    waits: Mapping[int, float] | None = None,
) -> None:
    """The plots and report.html; a failure is logged: the report is a view, a study never fails for it."""
    try:
        figures = report.draw_figures(spec, results, epochs)
        for name, png in figures.images.items():
            store.put(plot_object(name), png)
        page = report.report_html(spec, results, figures, lost, confirmed, warm, epochs, waits)
        store.put(REPORT_OBJECT, page.encode())
    except Exception as exc:
        log.warning("report_failed", error=f"{type(exc).__name__}: {exc}", exc_info=True)
