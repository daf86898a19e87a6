"""``kubetune status``: where a study stands, read from its store, or from its Study object.

The store holds every record; the Study object (``kubetune status
study/NAME``) holds the status the controller derived from them, for a user
who can reach the cluster but not the bucket: a summary, without the
leaderboard. For people, a summary and a leaderboard with aligned columns, the best trial
first, like ``kubectl get``; for programs, the JSON document (``-o json``,
or whenever the output is not a terminal). ``--watch`` redraws it until the
study ends. The leaderboard's metric columns are the kind's (a program's:
every metric it reports), under a heading of their own, apart from the
parameters': the two may share a name. With several objectives or
constraints, the other objectives and the constrained metrics come first,
and each succeeded trial is marked as on the Pareto front or infeasible.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TextIO

from kubetune.contract import WARM_START_OBJECT, Params, ParamValue, RecordError, TrialResult, WarmStartRecord
from kubetune.controller import budgets, confirmation, objectives, report
from kubetune.controller.best import best_document
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import History, read_study
from kubetune.controller.leaderboard import front, running_epochs, sign, view_metrics
from kubetune.spec import Spec
from kubetune.store import Store, StoreError, open_store

REASON_WIDTH = 60  # a long failure reason is cut here; `kubetune report` has it whole
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: what `watch` does between redraws
COUNTED = ("succeeded", "failed", "pruned", "running", "queued")  # a Study's trial counts, in its summary
_ORDER = {"succeeded": 0, "pruned": 1, "failed": 2, "running": 3, "confirming": 4, "queued": 5}


@dataclass(frozen=True)
class Row:
    """One trial as the leaderboard shows it; a running one at its latest epoch."""

    index: int
    status: str
    value: float | None
    params: Params
    metrics: dict[str, float] = field(default_factory=dict)
    epoch: int | None = None
    wall_time_s: float | None = None
    reason: str | None = None
    mark: str = ""  # several objectives: "front" or "infeasible"


class View(Protocol):
    """What ``render`` and ``watch`` show: a study as a JSON document and as lines for people."""

    @property
    def document(self) -> dict[str, Any]: ...

    @property
    def ended(self) -> bool: ...

    def lines(self) -> list[str]: ...


@dataclass(frozen=True)
class Snapshot:
    """A study as its store holds it."""

    spec: Spec
    history: History
    warm: WarmStartRecord | None = None

    # Cached: the table, the JSON document and `ended` each ask for these in one redraw.
    @cached_property
    def confirmed(self) -> Confirmation | None:
        return confirmation.review(self.spec, self.history)

    @property
    def metrics(self) -> list[str]:
        """The leaderboard's metric columns (the objective has its own)."""
        return view_metrics(self.spec, self.history.ordered_results(), self.history.search_epochs())

    @cached_property
    def on_front(self) -> set[int]:
        return {r.index for r in front(self.spec, self.history.ordered_results())}

    def _mark(self, r: TrialResult) -> str:
        """A succeeded trial's place in a multi-objective study: on the front, or infeasible."""
        if not self.spec.multi or not r.succeeded:
            return ""
        if r.index in self.on_front:
            return "front"
        return "" if objectives.feasible(self.spec, r) else "infeasible"

    @cached_property
    def rows(self) -> list[Row]:
        """Finished trials best first (then pruned, then failed), then those still running."""
        history, spec = self.history, self.spec
        finished = [
            Row(r.index, r.status, None if r.failed else r.objective_value, r.params, r.metrics, r.last_epoch,
                r.wall_time_s, r.reason, self._mark(r))
            for r in history.ordered_results()
        ]  # fmt: skip
        latest = running_epochs(history.ordered_results(), history.search_epochs())
        running = []
        for index in history.unfinished:
            epoch = latest.get(index)
            metrics = epoch.metrics if epoch else {}
            running.append(Row(index, _unfinished_status(history, index),
                               metrics.get(spec.objective.metric), history.launched[index].params, metrics,
                               epoch.epoch if epoch else None))  # fmt: skip
        s = sign(spec)

        def rank(r: Row) -> tuple[int, float, int]:
            ranked = r.value is not None and r.status in ("succeeded", "pruned")
            return _ORDER[r.status], -s * (r.value or 0.0) if ranked else 0.0, r.index

        return sorted([*finished, *running], key=rank)

    @property
    def document(self) -> dict[str, Any]:
        """The JSON form: the best document, with the budget, the leaderboard and the running trials."""
        results = self.history.ordered_results()
        doc = best_document(self.spec, results, confirmed=self.confirmed)
        h = self.history
        waiting = [i for i in h.unfinished if not h.confirming(i)]
        queued = sum(h.queued(i) for i in waiting)
        doc["trials"].update(total=self.spec.budget.max_trials, running=len(waiting) - queued, queued=queued)
        waits = sorted(h.queue_waits())
        if waits or queued:
            # Each admitted attempt's wait in its queue, in seconds.
            wait_s = {"median": statistics.median(waits), "max": waits[-1]} if waits else None
            doc["queue"] = {"queued": queued, "admitted": len(waits), "wait_s": wait_s}
        latest = running_epochs(results, self.history.search_epochs())
        doc["running"] = [
            {"index": i, "epoch": e.epoch, "metrics": e.metrics} for i, e in sorted(latest.items())
        ]
        doc["leaderboard"] = [
            {"index": r.index, "status": r.status, "value": r.value, "params": r.params, "metrics": r.metrics,
             "epoch": r.epoch, "wall_time_s": r.wall_time_s, "reason": r.reason}
            for r in self.rows
        ]  # fmt: skip
        doc["gpu_hours"] = round(budgets.gpu_hours(self.history), 4)
        # Attempts the infrastructure took away (spot reclaims, evictions): relaunched, never charged.
        doc["lost_attempts"] = [
            {"index": a.index, "attempt": a.attempt, "cause": a.cause, "reason": a.reason,
             "minutes": round((a.ended_at - a.started_at) / 60, 2)}
            for i in sorted(self.history.lost) for a in self.history.lost[i]
        ]  # fmt: skip
        if self.warm is not None:
            doc["warm_start"] = {"told": self.warm.told, "left_out": self.warm.left_out}
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

    def lines(self) -> list[str]:
        return [*_summary(self), "", *_leaderboard(self)]


@dataclass(frozen=True)
class StudyObject:
    """A study as its Study object's status says (kubetune.controller.resource)."""

    obj: dict[str, Any]

    @property
    def document(self) -> dict[str, Any]:
        meta = self.obj["metadata"]
        return {"study": meta["name"], "namespace": meta.get("namespace"), **(self.obj.get("status") or {})}

    @property
    def ended(self) -> bool:
        return self.document.get("phase") in ("Completed", "Failed")

    def lines(self) -> list[str]:
        doc = self.document
        trials, best = doc.get("trials") or {}, doc.get("best")
        objective = (self.obj.get("spec") or {}).get("objective") or {}
        metric = objective.get("metric", "objective")
        counts = ", ".join(f"{trials.get(k, 0)} {k}" for k in COUNTED)
        lost, limit = trials.get("lostAttempts", 0), doc.get("maxGpuHours")
        lines = [
            ("STUDY", f"{doc['study']} ({doc.get('phase') or 'no status yet'})"),
            ("TRIALS", f"{doc.get('progress', '')} finished: {counts}; {lost} attempts lost"),
            ("BEST", "none yet" if not best else f"trial {best['index']}: {metric}={_number(best['value'])}  "
                     + " ".join(f"{k}={_value(v)}" for k, v in sorted((best.get("params") or {}).items()))),
            ("GPU HOURS", f"{doc.get('gpuHours', 0):.2f}" + (f" of {limit:g}" if limit else "")),
        ]  # fmt: skip
        if doc.get("endedBy"):
            lines.append(("ENDED BY", doc["endedBy"]))
        for c in doc.get("conditions") or []:
            lines.append(
                (str(c.get("type")).upper(), f"{c.get('status')} ({c.get('reason')}): {c.get('message')}")
            )
        lines.append(("STORE", f"{doc.get('store', '')} (the leaderboard: kubetune status STORE)"))
        return table(("", ""), lines)[1:]


def read(uri: str) -> Snapshot:
    store = open_store(uri, create=False)
    spec, history = read_study(store)
    return Snapshot(spec, history, warm_start(store) if spec.optimizer.warm_start else None)


def warm_start(store: Store) -> WarmStartRecord | None:
    """What the controller told the study first (``warm_start.json``); None when it did not say."""
    try:
        return WarmStartRecord.from_json(store.get(WARM_START_OBJECT))
    except (StoreError, RecordError):  # not written yet, or not readable: a view, never needed
        return None


def render(view: View, output: str) -> str:
    if output == "json":
        return json.dumps(view.document, indent=2)
    return "\n".join(view.lines())


def watch(read: Callable[[], View], output: str, interval_s: float, out: TextIO, clear: bool) -> None:
    """Redraw every ``interval_s`` until the study ends; the last view stays on screen."""
    while True:
        snap = read()
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
    if t["queued"]:
        trials += f", {t['queued']} queued"
    if lost:
        trials += f"; {len(lost)} attempts lost to the infrastructure and relaunched"
    lines = [
        ("STUDY", doc["study"] + (" (ended)" if snap.ended else "")),
        ("OBJECTIVE", _objectives(doc) if "front" in doc else f"{objective['metric']} ({objective['goal']})"),
        ("TRIALS", trials),
        ("BEST", "none yet" if best is None else f"trial {best['index']}: {objective['metric']}="
                 f"{_number(best['value'])}  {_params(snap.spec, best['params'])}"),
        ("GPU HOURS", f"{doc['gpu_hours']:.2f}" + (f" of {limit:g}" if limit else "")),
    ]  # fmt: skip
    if "front" in doc:
        on = [str(m["index"]) for m in doc["front"]]
        lines.insert(4, ("PARETO FRONT", f"{len(on)} trials: {', '.join(on)}" if on else "none yet"))
    if "confirmation" in doc:
        lines.insert(4, ("CONFIRMATION", _confirmation(doc["confirmation"], objective["metric"])))
    if "queue" in doc:
        lines.append(("QUEUE", _queue(doc["queue"])))
    if snap.spec.optimizer.warm_start:
        lines.append(("WARM START", _warm(snap.warm)))
    return table(("", ""), lines)[1:]


def _objectives(doc: dict[str, Any]) -> str:
    """Several objectives and the constraints, as the best document lists them."""
    goals = ", ".join(f"{o['metric']} ({o['goal']})" for o in doc["objectives"])
    bounds = [
        " and ".join(
            f"{c['metric']} {op} {_number(c[k])}" for k, op in (("min", ">="), ("max", "<=")) if k in c
        )
        for c in doc["constraints"]
    ]
    return goals + (f"; subject to {', '.join(bounds)}" if bounds else "")


def _queue(q: dict[str, Any]) -> str:
    out = f"{q['queued']} waiting to be admitted"
    if q["wait_s"] is None:
        return out
    median, longest = _duration(q["wait_s"]["median"]), _duration(q["wait_s"]["max"])
    return out + f"; {q['admitted']} admitted after a median {median} (longest {longest})"


def _unfinished_status(history: History, index: int) -> str:
    if history.confirming(index):
        return "confirming"
    return "queued" if history.queued(index) else "running"


def _warm(warm: WarmStartRecord | None) -> str:
    if warm is None:
        return "not read yet (the controller reads the stores when the study starts)"
    left: Counter[str] = sum((Counter(w) for w in warm.left_out.values()), Counter())
    out = f"{warm.total} earlier trials told first, from {len(warm.told)} stores"
    return out + (f"; left out: {', '.join(f'{n} {why}' for why, n in left.items())}" if left else "")


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


def _leaderboard(snap: Snapshot) -> list[str]:
    """The table, under a line that says which columns are parameters and which are metrics."""
    names, metrics = [d.name for d in snap.spec.space], snap.metrics
    header = ("TRIAL", "STATUS", snap.spec.objective.metric.upper(), *(n.upper() for n in names),
              *(m.upper() for m in metrics), "EPOCHS", "WALL", "REASON")  # fmt: skip
    rows = [_cells(r, names, metrics) for r in snap.rows]
    lines = table(header, rows)
    groups = [("", 3), ("PARAMETERS", len(names)), ("METRICS", len(metrics)), ("", 3)]
    return [_groups(lines[0], header, groups), *lines]


def _cells(r: Row, names: list[str], metrics: list[str]) -> tuple[str, ...]:
    reason = r.reason or ""
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 3] + "..."
    status = f"{r.status} ({r.mark})" if r.mark else r.status
    return (str(r.index), status, _number(r.value), *(_value(r.params.get(n)) for n in names),
            *(_number(r.metrics.get(m)) for m in metrics), "" if r.epoch is None else str(r.epoch),
            "" if r.wall_time_s is None else _duration(r.wall_time_s), reason)  # fmt: skip


def _groups(header_line: str, header: Sequence[str], groups: Sequence[tuple[str, int]]) -> str:
    """A line naming each group of columns above its first column (where the header line has it)."""
    out, column = "", 0
    starts = _starts(header_line, header)
    for title, width in groups:
        if title and width:
            out = out.ljust(starts[column]) + title
        column += width
    return out.rstrip()


def _starts(line: str, header: Sequence[str]) -> list[int]:
    """Where each header cell starts in its padded line."""
    starts, at = [], 0
    for h in header:
        at = line.index(h, at)
        starts.append(at)
        at += len(h)
    return starts


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, three spaces apart, as ``kubectl get`` prints them.

    Every cell is shown on one line, without control characters: a trial's reason or a
    categorical value can hold a terminal's escape sequences."""
    rows = [[_one_line(report.printable(str(c))) for c in row] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    return [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    ]


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")


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
