"""The confirmation phase: the top of the leaderboard trained again on fresh seeds, for a best to trust.

Accuracy moves by up to ±0.025 between seeds of one configuration, so the best
search trial is partly the luck of its seed. Once the search is over
(``budget.max_trials`` done or a budget spent; not when the study failed), the
``confirm.top_k`` best distinct configurations are trained ``confirm.seeds``
more times each. The seeds are ``trial.seed + 1``, ``+ 2``, ...: never the
search's, the same for every study that is rerun, and the same draws for
every configuration, so that they are compared on equal luck. A kind without
a seed setting (``TrialKind.seed``; a program's) is run again as it is.

Each run is a trial of its own, with the next free index, launched through the
same launcher (so a Job named by its index, adopted by a restarted
controller); its launch record says which search trial it confirms and its
seed. The optimizer, the leaderboard, ``budget.max_trials`` and
``budget.max_failed`` never count it, no stopping rule stops it, and budgets
do not hold it back: it is the price of the answer. The winner is the
configuration with the best mean objective over its runs; the test metrics are
reported for the winner alone, so the test set never chooses. The model of the
winner's best run (by the objective) is copied to ``model.keras``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubetune.contract import MODEL_OBJECT, LaunchRecord, TrialResult, model_object
from kubetune.controller.history import History
from kubetune.controller.leaderboard import front, ranked, sign
from kubetune.errors import KubetuneError
from kubetune.log import get_logger
from kubetune.spec import Spec
from kubetune.store import NotFound, Store

log = get_logger("kubetune.confirmation")


@dataclass(frozen=True)
class Run:
    """A confirmation run still to launch: the search trial whose configuration it trains, and its seed."""

    confirms: int
    seed: int | None


@dataclass(frozen=True)
class Candidate:
    """One configuration of the top k: its search trial and its confirmation runs' results so far."""

    trial: TrialResult
    runs: tuple[TrialResult, ...]
    planned: int
    sign: float  # 1 to maximize, -1 to minimize

    @property
    def values(self) -> list[float]:
        return [r.objective_value for r in self.runs if r.succeeded and r.objective_value is not None]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        """The sample standard deviation; None below two runs."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    def mean_metrics(self) -> dict[str, float]:
        """Each metric every succeeded run reported, averaged over them."""
        done = [r.metrics for r in self.runs if r.succeeded]
        names = set.intersection(*(set(m) for m in done)) if done else set()
        return {name: statistics.fmean(m[name] for m in done) for name in sorted(names)}

    def best_run(self) -> TrialResult | None:
        """The succeeded run with the best objective (its model is the one kept); ties: the earliest."""
        done = [r for r in self.runs if r.succeeded and r.objective_value is not None]
        return min(done, key=lambda r: (-self.sign * (r.objective_value or 0.0), r.index), default=None)


@dataclass(frozen=True)
class Confirmation:
    """Where the confirmation phase stands, from the records alone."""

    seeds: tuple[int | None, ...]
    candidates: tuple[Candidate, ...]  # in search rank order
    started: bool  # some run was launched

    @property
    def finished(self) -> int:
        return sum(len(c.runs) for c in self.candidates)

    @property
    def total(self) -> int:
        return sum(c.planned for c in self.candidates)

    @property
    def complete(self) -> bool:
        return self.started and self.finished >= self.total

    @property
    def winner(self) -> Candidate | None:
        """The best mean once every run finished; ties go to the better search rank."""
        if not self.complete:
            return None
        measured = [c for c in self.candidates if c.mean is not None]
        return min(measured, key=lambda c: -c.sign * (c.mean or 0.0), default=None)


def review(spec: Spec, history: History) -> Confirmation | None:
    """The confirmation phase of ``history``; None when the spec asks for none."""
    if spec.confirm.top_k == 0:
        return None
    seeds = confirmation_seeds(spec)
    runs = history.confirmations()
    candidates = tuple(
        Candidate(trial, _results(history, runs, trial.index), len(seeds), sign(spec))
        for trial in top(spec, history.ordered_results())
    )
    return Confirmation(seeds, candidates, started=bool(runs))


def _results(history: History, runs: dict[int, LaunchRecord], confirms: int) -> tuple[TrialResult, ...]:
    """The results of the runs that confirm search trial ``confirms``, in index order."""
    done = history.results
    return tuple(done[i] for i, run in runs.items() if run.confirms == confirms and i in done)


def top(spec: Spec, results: Sequence[TrialResult]) -> list[TrialResult]:
    """The best ``confirm.top_k`` search trials of distinct configurations; with several objectives,
    the Pareto front's, best first by the first objective (which then picks the winner)."""
    chosen: list[TrialResult] = []
    for r in front(spec, results) if len(spec.objectives) > 1 else ranked(spec, results):
        if len(chosen) == spec.confirm.top_k:
            break
        if all(c.params != r.params for c in chosen):  # a repeated point is one configuration
            chosen.append(r)
    return chosen


def confirmation_seeds(spec: Spec) -> tuple[int | None, ...]:
    base = spec.kind.setting(spec.trial, spec.kind.seed)
    if not isinstance(base, int):
        return (None,) * spec.confirm.seeds
    return tuple(base + 1 + j for j in range(spec.confirm.seeds))


def missing(spec: Spec, history: History) -> list[Run]:
    """The runs of the plan not launched yet, best configuration first."""
    runs = history.confirmations()
    out: list[Run] = []
    for trial in top(spec, history.ordered_results()):
        have = Counter(launch.seed for launch in runs.values() if launch.confirms == trial.index)
        wanted = Counter(confirmation_seeds(spec))
        out += [Run(trial.index, seed) for seed in (wanted - have).elements()]
    return out


def settings_for(spec: Spec, launch: LaunchRecord | None) -> Any:
    """The trial settings a run trains with: the study's, with a confirmation run's seed."""
    seed = spec.kind.seed
    if launch is None or launch.seed is None or seed is None:
        return spec.trial
    return replace(spec.trial, **{seed: launch.seed})


def publish_model(store: Store, confirmed: Confirmation) -> int | None:
    """Copy the winner's model beside best.json; the run it came from, None when there is none."""
    winner = confirmed.winner
    run = winner.best_run() if winner else None
    if winner is None or run is None:
        return None
    try:
        store.put(MODEL_OBJECT, store.get(model_object(run.index)))
    except NotFound:
        log.warning("model_missing", object=model_object(run.index))  # its trial recorded a result without it
        return None
    log.info("model_published", object=MODEL_OBJECT, run=run.index, confirms=winner.trial.index)
    return run.index


def fetch_model(store: Store, confirmed: Confirmation | None, into: Path) -> Path:
    """Write the chosen configuration's model into the folder ``into``; KubetuneError when there is none."""
    where = store.uri
    if confirmed is None:
        raise KubetuneError(f"{where}: the study has no model (models come from a confirmation phase: "
                            "set confirm.top_k)")  # fmt: skip
    winner = confirmed.winner
    run = winner.best_run() if winner else None
    if run is None and confirmed.complete:
        raise KubetuneError(f"{where}: the study has no model (no confirmation run succeeded)")
    if run is None:
        raise KubetuneError(f"{where}: no model yet (the confirmation phase has "
                            f"{confirmed.finished} of {confirmed.total} runs finished)")  # fmt: skip
    try:
        # The run's own upload, not the model.keras copy: the records are the truth, the copy a view.
        data = store.get(model_object(run.index))
    except NotFound:
        raise KubetuneError(f"{where}: the study has no model (its trials save none: "
                            f"{model_object(run.index)} not found)") from None  # fmt: skip
    path = into / MODEL_OBJECT
    try:
        into.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise KubetuneError(f"{into}: cannot write the model: {exc.strerror}") from None
    return path
