"""What a study has found, derived from the trial records alone.

``best.json`` and ``history.csv`` are views: rewritten after every trial,
rebuilt from the records on any machine with access to the store, never read
back as truth.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.contract import BEST_OBJECT, HISTORY_OBJECT, TrialResult
from kubetune.spec import Spec
from kubetune.store import Store


@dataclass(frozen=True)
class Summary:
    total: int
    succeeded: int
    failed: int
    best: TrialResult | None


def best_of(spec: Spec, results: Sequence[TrialResult]) -> TrialResult | None:
    """The best succeeded trial; ties go to the earliest index."""
    done = [r for r in results if r.succeeded and r.objective_value is not None]
    if not done:
        return None
    sign = -1.0 if spec.objective.goal == "maximize" else 1.0
    return min(done, key=lambda r: (sign * (r.objective_value or 0.0), r.index))


def summarize(spec: Spec, results: Sequence[TrialResult]) -> Summary:
    ok = sum(r.succeeded for r in results)
    return Summary(len(results), ok, len(results) - ok, best_of(spec, results))


def best_document(spec: Spec, results: Sequence[TrialResult]) -> dict[str, Any]:
    s = summarize(spec, results)
    doc: dict[str, Any] = {
        "study": spec.name,
        "objective": {"metric": spec.objective.metric, "goal": spec.objective.goal},
        "trials": {"finished": s.total, "succeeded": s.succeeded, "failed": s.failed},
        "best": None,
    }
    if s.best is not None:
        b = s.best
        doc["best"] = {
            "index": b.index,
            "value": b.objective_value,
            "params": spec.full_params(b.params),
            "metrics": b.metrics,
            "wall_time_s": b.wall_time_s,
        }
    return doc


def history_csv(spec: Spec, results: Sequence[TrialResult]) -> str:
    """One row per trial, in index order, for a spreadsheet."""
    names = [d.name for d in spec.space]
    metrics = ["loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["index", "status", "objective", *names, *metrics, "wall_time_s", "images_per_s", "reason"]
    )
    for r in sorted(results, key=lambda r: r.index):
        w.writerow(
            [
                r.index,
                r.status,
                _cell(r.objective_value),
                *(_cell(r.params.get(n)) for n in names),
                *(_cell(r.metrics.get(m)) for m in metrics),
                _cell(r.wall_time_s),
                _cell(r.images_per_s),
                r.reason or "",
            ]
        )
    return buf.getvalue()


def _cell(v: object) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def publish(store: Store, spec: Spec, results: Sequence[TrialResult]) -> None:
    """Rewrite the views after a trial finished."""
    store.put(BEST_OBJECT, (json.dumps(best_document(spec, results), indent=2) + "\n").encode())
    store.put(HISTORY_OBJECT, history_csv(spec, results).encode())
