"""The GP loop: ask for a point, launch a trial, read its result, repeat.

The store is the only state. On start the loop replays the trial records,
adopts trials a previous controller left running (or launches them again
under the same index), and continues until the budget is spent or too many
trials failed. Every result written is followed by fresh ``best.json`` and
``history.csv`` views, and (at most every few seconds, drawn beside the
loop) the plots and ``report.html``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from kubetune.contract import (
    SPEC_OBJECT,
    LaunchRecord,
    TrialRequest,
    TrialResult,
    failed_result,
    params_object,
    result_object,
)
from kubetune.controller import budgets, confirmation, early_stopping, optimizer, report, warmstart
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.early_stopping import EarlyStopping
from kubetune.controller.history import Epochs, History, Lost, read_history, read_result
from kubetune.controller.observer import StudyObserver, Unobserved
from kubetune.controller.retries import Retries
from kubetune.errors import UsageError
from kubetune.launcher import Launcher, TrialExit
from kubetune.log import get_logger
from kubetune.spec import Spec, parse_spec
from kubetune.store import AlreadyExists, NotFound, Store

log = get_logger("kubetune.study")

# Fields a resumed study may change: raising max_trials extends a study; a
# confirmation phase may be asked for (or widened) after the search.
RESUMABLE_CHANGES = ("budget", "confirm")
PLOTS_EVERY_S = 10.0
# A redraw waits while a trial is due to finish before it would be done
# (launching the next trial comes first), but never past this.
PLOTS_MAX_STALE_S = 60.0


@dataclass(frozen=True)
class Outcome:
    completed: bool  # False: stopped after max_failed failures
    summary: report.Summary
    confirmed: Confirmation | None = None  # the confirmation phase, when the spec asks for one


class Study:
    def __init__(
        self,
        spec: Spec,
        store: Store,
        launcher: Launcher,
        *,
        observer: StudyObserver | None = None,
        on_progress: Callable[[Study], None] | None = None,
        poll_s: float = 1.0,
        epochs_poll_s: float = early_stopping.POLL_S,
    ) -> None:
        self.spec = spec
        self.store = store
        self.launcher = launcher
        self.observer = observer or Unobserved()
        self.on_progress = on_progress or (lambda _study: None)
        self.poll_s = poll_s
        self.history = History()
        self.early_stopping = EarlyStopping(spec, store, launcher, self.observer, epochs_poll_s)
        self.told: tuple[TrialResult, ...] = ()  # earlier studies' trials (optimizer.warm_start)
        self.retries = Retries(spec, store, self.observer)
        self.ended_by: str | None = None  # the budget that stopped new trials, in words
        self.durations: list[float] = []
        self._drawn_at = time.monotonic()  # nothing to draw before the first result
        self._draw_s = 1.0  # what a redraw costs; measured after the first
        self._plots_stale = False
        self._drawing: threading.Thread | None = None  # a redraw in progress
        self._model_from: int | None = None  # the run whose model is in the store as model.keras

    # --- the loop -------------------------------------------------------------

    def run(self) -> Outcome:
        self.told = warmstart.load(self.spec)  # before the claim: a refused store leaves nothing behind
        claim_store(self.store, self.spec)
        self.history = read_history(self.store, self.spec)
        log.info(
            "study_resumed" if self.history.launched else "study_started",
            study=self.spec.name,
            store=self.store.uri,
            finished=len(self.history.results),
            launcher=self.launcher.name,
        )
        self._resume()
        self.on_progress(self)
        self._fill()
        while self.launcher.running() or self.retries.waiting:
            self._redraw_plots_if_due()
            finished = [r for r in map(self._finish, self._wait()) if r is not None]
            # Successors first: the views, annotations and Events can wait
            # the few tens of milliseconds a launch takes.
            self._fill()
            progressed = self.early_stopping.poll(self.history)
            self._announce(finished, progressed)
            self.on_progress(self)
        summary = replace(report.summarize(self.spec, self.history.ordered_results()), ended_by=self.ended_by)
        confirmed = self._confirmed()
        if self._drawing is not None:
            self._drawing.join()  # the final report must be the last one written
        report.publish(
            self.store,
            self.spec,
            self.history.ordered_results(),
            epochs=self.history.search_epochs(),
            ended_by=self.ended_by,
            lost=self.history.lost,
            confirmed=confirmed,
        )
        completed = not self._too_many_failures()
        self.observer.study_ended(summary, completed)
        winner = confirmed.winner if confirmed else None
        log.info(
            "study_completed" if completed else "study_failed",
            study=self.spec.name,
            succeeded=summary.succeeded,
            failed=summary.failed,
            best=summary.best.objective_value if summary.best else None,
            confirmed_best=winner.mean if winner else None,
        )
        return Outcome(completed, summary, confirmed)

    def _resume(self) -> None:
        for index in self.history.unfinished:
            req = self._request(index, self.history.launched[index].params)
            if self.launcher.adopt(req):
                log.info("trial_adopted", index=index)
            else:
                # Same index, same params: at most one result is ever recorded.
                self._start(req)
                log.info("trial_relaunched", index=index)

    def _too_many_failures(self) -> bool:
        return self.history.failed >= self.spec.budget.max_failed

    def _wait(self) -> list[TrialExit]:
        if self.launcher.running():
            return self.launcher.wait(self.poll_s)
        time.sleep(min(self.poll_s, self.retries.next_in_s()))  # only lost trials, backing off
        return []

    def _fill(self) -> None:
        budget = self.spec.budget
        if not self._search_over() and not self._budget_spent() and self._relaunch_lost():
            while (
                len(self.launcher.running()) < budget.parallel
                and self.history.searched < budget.max_trials
                and not self._too_many_failures()
            ):
                self._launch_next()
        # Budgets hold back the search, not the confirmation of what it found.
        if self._search_over() and self._relaunch_lost():
            for run in confirmation.missing(self.spec, self.history):
                if len(self.launcher.running()) >= budget.parallel or not self._launch_confirmation(run):
                    return

    def _relaunch_lost(self) -> bool:
        """Launch the lost trials that are due again, first: their index is already handed out.
        Whether a slot is left."""
        for index in self.retries.due():
            if len(self.launcher.running()) >= self.spec.budget.parallel:
                return False
            self._start(self._request(index, self.history.launched[index].params))
        return len(self.launcher.running()) < self.spec.budget.parallel

    def _search_over(self) -> bool:
        """No search trial left to launch or wait for, and the study has not failed."""
        h = self.history
        spent = h.searched >= self.spec.budget.max_trials or self.ended_by is not None
        return spent and all(h.confirming(i) for i in h.unfinished) and not self._too_many_failures()

    def _budget_spent(self) -> bool:
        """Whether the GPU-hour or wall-clock budget is spent; the first time, lost trials are given up."""
        if self.ended_by is None:
            self.ended_by = budgets.spent(self.spec, self.history)
            if self.ended_by is not None:
                log.warning("budget_spent", reason=self.ended_by, running=len(self.launcher.running()))
                for index in self.retries.abandon():
                    params = self.history.launched[index].params
                    why = f"lost to the infrastructure and not launched again: {self.ended_by}"
                    failure = failed_result(index, params, self.spec.objective.metric, why)
                    self.history.results[index] = self._record_for(failure)
        return self.ended_by is not None

    def _launch_next(self) -> None:
        index = self.history.next_index()
        pending = [self.history.launched[i].params for i in sorted(self.launcher.running())]
        # The optimizer counts search trials: a confirmation run before (a study extended after
        # its confirmation) takes an index, not a place in the initial design.
        searched = self.history.searched
        params = optimizer.suggest(self.spec, searched, self.history.ordered_results(), pending, self.told)
        record = LaunchRecord(index, params, time.time(), self.launcher.name, self.launcher.gpus)
        self._hand_out(record)

    def _launch_confirmation(self, run: confirmation.Run) -> bool:
        """Launch one confirmation run under the next index; False when the index was taken."""
        trial = self.history.results[run.confirms]
        record = LaunchRecord(self.history.next_index(), trial.params, time.time(), self.launcher.name,
                              self.launcher.gpus, confirms=run.confirms, seed=run.seed)  # fmt: skip
        return self._hand_out(record)

    def _hand_out(self, record: LaunchRecord) -> bool:
        """Write the launch record, then start the trial; False when the index was taken."""
        try:
            self.store.create(params_object(record.index), record.to_json())
        except AlreadyExists:
            # Someone else handed this index out: their record wins; re-read.
            log.warning("index_taken", index=record.index)
            self.history = read_history(self.store, self.spec)
            return False
        self.history.launched[record.index] = record
        self._start(self._request(record.index, record.params))
        return True

    def _start(self, req: TrialRequest) -> None:
        self.launcher.launch(req)
        self.retries.launched(req.index)
        self.observer.trial_started(req)

    def _request(self, index: int, params: dict[str, float | int | str]) -> TrialRequest:
        launch = self.history.launched.get(index)
        return TrialRequest(
            store=self.store.uri,
            study=self.spec.name,
            index=index,
            params=self.spec.full_params(params),
            objective=self.spec.objective.metric,
            settings=confirmation.settings_for(self.spec, launch),
            attempt=self.history.attempt(index),
            # A confirmation run keeps its model: the winner's is the study's.
            save_model=self.history.confirming(index) and self.spec.kind.saves_model,
        )

    def _finish(self, ex: TrialExit) -> TrialResult | None:
        """Read (or, for a trial that could not write it, record) the result of a trial that ended;
        None when the infrastructure lost it and it is to be launched again."""
        launch = self.history.launched.get(ex.index)
        self.early_stopping.trial_exited(self.history, ex.index)
        result = read_result(self.store, ex.index, launch, self.spec)
        if result is None:
            pruned = self.early_stopping.pruned_for(self.history, ex.index)
            if pruned is None and launch is not None and self.retries.lost(self.history, ex):
                return None
            params = launch.params if launch else {}
            reason = (
                self.retries.exhausted(self.history, ex)
                if not ex.ok
                else "exited 0 but wrote no result record"
            )
            failure = failed_result(ex.index, params, self.spec.objective.metric, reason)
            result = self._record_for(pruned or failure)
        self.history.results[ex.index] = result
        if launch is not None:
            self.durations.append(time.time() - launch.launched_at)
        return result

    def _announce(self, finished: list[TrialResult], progressed: bool) -> None:
        """best.json and history.csv, then each trial's annotations, Event and log line."""
        if not finished and not progressed:
            return
        results = self.history.ordered_results()
        report.publish(self.store, self.spec, results, epochs=self.history.search_epochs(), plots=False,
                       confirmed=self._confirmed())  # fmt: skip
        self._plots_stale = True
        summary = report.summarize(self.spec, results)
        for result in finished:
            self.observer.trial_finished(result, summary, self.history.attempt(result.index))
            event = f"trial_{result.status}"
            log.info(event, index=result.index, value=result.objective_value, reason=result.reason,
                     params=result.params)  # fmt: skip

    def _redraw_plots_if_due(self) -> None:
        """Plots and report.html, when :func:`redraw_due` says so, drawn in a thread of their own.

        At a few hundred trials a redraw takes tens of seconds of CPU (the
        objective plot's model); drawn in the loop it held up every launch
        meanwhile (bench/kwok.py: 100 trials in parallel, stalls of 9-63 s).
        The thread draws from a snapshot, so the loop may go on changing the
        history; one redraw at a time.
        """
        if not self._plots_stale or (self._drawing is not None and self._drawing.is_alive()):
            return
        stale_s = time.monotonic() - self._drawn_at
        if not redraw_due(stale_s, self._draw_s, self._next_exit_in_s()):
            return
        self._drawn_at = time.monotonic()
        self._plots_stale = False
        snapshot = (
            self.history.ordered_results(),
            {i: dict(e) for i, e in self.history.search_epochs().items()},
            {i: list(a) for i, a in self.history.lost.items()},
            self._confirmed(),
        )
        self._drawing = threading.Thread(target=self._draw, args=snapshot, name="kubetune-plots", daemon=True)
        self._drawing.start()

    def _draw(
        self, results: list[TrialResult], epochs: Epochs, lost: Lost, confirmed: Confirmation | None
    ) -> None:
        t0 = time.monotonic()
        report.redraw(self.store, self.spec, results, epochs, lost, confirmed)
        self._draw_s = time.monotonic() - t0

    def _next_exit_in_s(self) -> float | None:
        """When the first running trial should finish, from the mean trial time so far."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        launched = self.history.launched
        starts = [launched[i].launched_at for i in self.launcher.running() if i in launched]
        return min(starts) + mean - time.time() if starts else None

    def _confirmed(self) -> Confirmation | None:
        """The confirmation phase as it stands; once it has a winner, its model copied beside best.json."""
        confirmed = confirmation.review(self.spec, self.history)
        winner = confirmed.winner if confirmed else None
        run = winner.best_run() if winner else None
        if (
            self.spec.kind.saves_model
            and confirmed is not None
            and run is not None
            and run.index != self._model_from
        ):
            self._model_from = confirmation.publish_model(self.store, confirmed)
        return confirmed

    def _record_for(self, result: TrialResult) -> TrialResult:
        """Write the record of a trial that could not (it failed, or was killed after a stop request)."""
        try:
            self.store.create(result_object(result.index), result.to_json())
            return result
        except AlreadyExists:
            # The trial wrote its own record after all (a late write): trust it.
            found = read_result(self.store, result.index, None, self.spec)
            return found or result

    # --- progress -------------------------------------------------------------

    def eta_s(self) -> float | None:
        """Seconds to go: mean trial time times the rounds of trials left."""
        if not self.durations:
            return None
        left = self.spec.budget.max_trials - len(self.history.ordered_results())
        rounds = -(-left // self.spec.budget.parallel)
        return rounds * sum(self.durations) / len(self.durations)


def redraw_due(stale_s: float, draw_s: float, next_exit_in_s: float | None) -> bool:
    """Whether to redraw plots that have been stale for ``stale_s`` seconds now.

    At most every PLOTS_EVERY_S; and not while a trial is due to finish within
    the ``draw_s`` a redraw takes, since its exit would wait for the redraw
    before the next trial launches (with 3-s trials at parallel 8, each
    redraw held up several launches by a second; bench/scaling.py). Never
    staler than PLOTS_MAX_STALE_S.
    """
    if stale_s < PLOTS_EVERY_S:
        return False
    if stale_s >= PLOTS_MAX_STALE_S or next_exit_in_s is None:
        return True
    return next_exit_in_s > draw_s


def claim_store(store: Store, spec: Spec) -> None:
    """Write the spec snapshot, or check that the store holds this same study."""
    snapshot = spec.to_yaml().encode()
    try:
        store.create(SPEC_OBJECT, snapshot)
        return
    except AlreadyExists:
        pass
    try:
        stored = parse_spec(store.get(SPEC_OBJECT).decode()).to_dict()
    except NotFound:  # pragma: no cover - deleted between two calls
        stored = {}
    wanted = spec.to_dict()
    for key in wanted:
        if key not in RESUMABLE_CHANGES and stored.get(key) != wanted[key]:
            raise UsageError(
                f"{key}: differs from the study already in {store.uri} "
                "(resume with the same spec, or use another store)"
            )
    if stored != wanted:
        store.put(SPEC_OBJECT, snapshot)
