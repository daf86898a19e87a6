"""``kubetune status``: where a study stands, read from its store alone.

For people, a summary and a leaderboard with aligned columns, the best trial
first, like ``kubectl get``; for programs, the JSON document (``-o json``,
or whenever the output is not a terminal). ``--watch`` redraws it until the
study ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from kubetune.contract import EpochRecord, Params, ParamValue, TrialResult
from kubetune.controller import budgets, confirmation, report
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import History, read_study
from kubetune.spec import Spec
from kubetune.store import open_store

REASON_WIDTH = 60  # a long failure reason is cut here; `kubetune report` has it whole
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: what `watch` does between redraws


@dataclass(frozen=True)
class Snapshot:
    spec: Spec
    history: History

    @property
    def confirmed(self) -> Confirmation | None:
        return confirmation.review(self.spec, self.history)

    @property
    def document(self) -> dict[str, Any]:
        """The JSON form: the best document, with the budget and the running trials."""
        results = self.history.ordered_results()
        doc = report.best_document(self.spec, results, confirmed=self.confirmed)
        running = [i for i in self.history.unfinished if not self.history.confirming(i)]
        doc["trials"].update(total=self.spec.budget.max_trials, running=len(running))
        latest = report.running_epochs(results, self.history.search_epochs())
        doc["running"] = [{"index": i, "epoch": e.epoch, **e.metrics} for i, e in sorted(latest.items())]
        doc["gpu_hours"] = round(budgets.gpu_hours(self.history), 4)
        # Attempts the infrastructure took away (spot reclaims, evictions): relaunched, never charged.
        doc["lost_attempts"] = [
            {"index": a.index, "attempt": a.attempt, "cause": a.cause, "reason": a.reason,
             "minutes": round((a.ended_at - a.started_at) / 60, 2)}
            for i in sorted(self.history.lost) for a in self.history.lost[i]
        ]  # fmt: skip
        return doc

    @property
    def ended(self) -> bool:
        """Too many trials failed, or every trial of the budget finished and any confirmation
        phase with them: the controller stops either way."""
        budget = self.spec.budget
        if self.history.failed >= budget.max_failed:
            return True
        confirmed = self.confirmed
        searched = len(self.history.ordered_results()) >= budget.max_trials
        return searched and (confirmed is None or confirmed.complete or not confirmed.candidates)


def read(uri: str) -> Snapshot:
    spec, history = read_study(open_store(uri, create=False))
    return Snapshot(spec, history)


def render(snap: Snapshot, output: str) -> str:
    if output == "json":
        return json.dumps(snap.document, indent=2)
    return "\n".join([*_summary(snap), "", *table(_header(snap.spec), _rows(snap))])


def watch(uri: str, output: str, interval_s: float, out: TextIO, clear: bool) -> None:
    """Redraw every ``interval_s`` until the study ends; the last view stays on screen."""
    while True:
        snap = read(uri)
        # JSON: one document per line and refresh, for a program reading the stream.
        text = json.dumps(snap.document) if output == "json" else render(snap, output)
        out.write((CLEAR if clear else "") + text + "\n")
        out.flush()
        if snap.ended:
            return
        time.sleep(interval_s)


def _summary(snap: Snapshot) -> list[str]:
    doc = snap.document
    t = doc["trials"]
    counts = [f"{t['succeeded']} succeeded", f"{t['failed']} failed"]
    if "pruned" in t:
        counts.append(f"{t['pruned']} pruned")
    best = doc["best"]
    objective = doc["objective"]
    limit = snap.spec.budget.max_gpu_hours
    lost = doc["lost_attempts"]
    trials = f"{t['finished']}/{t['total']} finished: {', '.join(counts)}; {t['running']} running"
    if lost:
        trials += f"; {len(lost)} attempts lost to the infrastructure and relaunched"
    lines = [
        ("STUDY", doc["study"] + (" (ended)" if snap.ended else "")),
        ("OBJECTIVE", f"{objective['metric']} ({objective['goal']})"),
        ("TRIALS", trials),
        ("BEST", "none yet" if best is None else f"trial {best['index']}: {objective['metric']}="
                 f"{_number(best['value'])}  {_params(snap.spec, best['params'])}"),
        ("GPU HOURS", f"{doc['gpu_hours']:.2f}" + (f" of {limit:g}" if limit else "")),
    ]  # fmt: skip
    if "confirmation" in doc:
        lines.insert(4, ("CONFIRMATION", _confirmation(doc["confirmation"], objective["metric"])))
    return table(("", ""), lines)[1:]


def _confirmation(c: dict[str, Any], metric: str) -> str:
    """Runs finished; then each configuration's mean and spread, the winner marked."""
    parts = [f"{c['finished']}/{c['total']} runs finished"]
    for config in c["configs"]:
        mark = " (winner)" if config["index"] == c["winner"] else ""
        sd = "" if config["sd"] is None else f" sd={_number(config['sd'])}"
        parts.append(
            f"trial {config['index']}{mark}: mean {metric}={_number(config['mean'])}{sd} n={config['n']}"
        )
    return "; ".join(parts)


def _header(spec: Spec) -> tuple[str, ...]:
    names = [d.name.upper() for d in spec.space]
    return ("TRIAL", "STATUS", spec.objective.metric.upper(), *names, "EPOCHS", "WALL", "REASON")


def _rows(snap: Snapshot) -> list[tuple[str, ...]]:
    spec, history = snap.spec, snap.history
    sign = -1.0 if spec.objective.goal == "maximize" else 1.0
    order = {"succeeded": 0, "pruned": 1, "failed": 2}

    def rank(r: TrialResult) -> tuple[int, float, int]:
        value = r.objective_value if r.objective_value is not None and not r.failed else None
        return (order[r.status], sign * value if value is not None else 0.0, r.index)

    rows = [_row(spec, r.index, r.status, r.params, r) for r in sorted(history.ordered_results(), key=rank)]
    latest = report.running_epochs(history.ordered_results(), history.search_epochs())
    for index in history.unfinished:
        status = "confirming" if history.confirming(index) else "running"
        rows.append(_row(spec, index, status, history.launched[index].params, None, latest.get(index)))
    return rows


def _row(
    spec: Spec,
    index: int,
    status: str,
    params: Params,
    r: TrialResult | None,
    epoch: EpochRecord | None = None,
) -> tuple[str, ...]:
    """A finished trial's row; a running one's shows its latest epoch and the objective there."""
    value = None if r is None or r.failed else r.objective_value
    if epoch is not None:
        value = epoch.metrics.get(spec.objective.metric)
    reason = (r.reason or "") if r is not None else ""
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 3] + "..."
    return (
        str(index),
        status,
        _number(value),
        *(_value(params.get(d.name)) for d in spec.space),
        str(epoch.epoch)
        if epoch is not None
        else ""
        if r is None or r.last_epoch is None
        else str(r.last_epoch),
        "" if r is None or r.wall_time_s is None else _duration(r.wall_time_s),
        reason,
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, three spaces apart, as ``kubectl get`` prints them."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    ]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _value(value: ParamValue | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _params(spec: Spec, params: Params) -> str:
    """The searched parameters (the others are the same for every trial)."""
    return " ".join(f"{d.name}={_value(params.get(d.name))}" for d in spec.space)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
