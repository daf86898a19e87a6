"""The GP loop: ask for a point, launch a trial, read its result, repeat.

The store is the only state. On start the loop replays the trial records,
adopts trials a previous controller left running (or launches them again
under the same index), and continues until the budget is spent or too many
trials failed. Each turn of the loop is five named stages:

* admit: trials launched into a queue that it admitted, recorded (their wait);
* collect: the trials that ended, read back (or recorded for them);
* decide: what to launch, a pure plan: lost trials due again, new points
  from the optimizer, confirmation runs, within the budgets (with a queue,
  at most budget.max_queued trials wait in it: each point chosen late);
* launch: each launch record written, then its trial started;
* publish: best.json and history.csv, each finished trial's annotations,
  Event and log line; the plots and report.html beside the loop
  (controller.publisher).

Between them, early stopping follows the running trials' curves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from kubetune.contract import (
    SPEC_OBJECT,
    WARM_START_OBJECT,
    AdmissionRecord,
    LaunchRecord,
    Params,
    TrialRequest,
    TrialResult,
    admission_object,
    failed_result,
    params_object,
    result_object,
)
from kubetune.controller import budgets, confirmation, early_stopping, optimizer, warmstart
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.early_stopping import EarlyStopping
from kubetune.controller.history import History, read_history, read_result, read_spec
from kubetune.controller.leaderboard import Summary, summarize
from kubetune.controller.observer import StudyObserver, Unobserved
from kubetune.controller.publisher import Publisher
from kubetune.controller.retries import Retries
from kubetune.errors import UsageError
from kubetune.launcher import Launcher, TrialExit
from kubetune.log import get_logger
from kubetune.spec import RESUMABLE_CHANGES, Spec
from kubetune.store import AlreadyExists, Store

log = get_logger("kubetune.study")


@dataclass(frozen=True)
class Outcome:
    completed: bool  # False: stopped after max_failed failures
    summary: Summary
    confirmed: Confirmation | None = None  # the confirmation phase, when the spec asks for one


@dataclass(frozen=True)
class Plan:
    """What the decide stage chose to launch, in order: lost trials due again (their indices,
    handed out before), then new launch records (search points, confirmation runs)."""

    again: tuple[int, ...] = ()
    new: tuple[LaunchRecord, ...] = ()


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
        self.retries = Retries(spec, store, self.observer)
        self.publisher = Publisher(spec, store)
        self.told: tuple[TrialResult, ...] = ()  # earlier studies' trials (optimizer.warm_start)
        self.ended_by: str | None = None  # the budget that stopped new trials, in words
        self.durations: list[float] = []
        self.in_flight = (0, 0)  # (running, queued), as last told to the observer

    # --- the loop -------------------------------------------------------------

    def run(self) -> Outcome:
        self._start()
        while self.launcher.running() or self.retries.waiting:
            self.publisher.redraw_if_due(self.history, self._next_exit_in_s())
            self.admit()
            finished = self.collect(self._wait())
            # Successors first: the views, annotations and Events can wait
            # the few tens of milliseconds a launch takes.
            self.launch(self.decide())
            progressed = self.early_stopping.poll(self.history)
            self.publish(finished, progressed)
            self.on_progress(self)
        return self._end()

    def amend(self, spec: Spec) -> None:
        """Take a changed budget or confirmation phase while running (a patched Study object):
        only what a resume may change, recorded in the store as a resume records it."""
        claim_store(self.store, spec)  # UsageError for any other change
        self.spec = spec
        for part in (self.early_stopping, self.retries, self.publisher):
            part.spec = spec
        log.info("study_amended", budget=spec.to_dict()["budget"], confirm=spec.to_dict()["confirm"])

    def _start(self) -> None:
        """Claim the store, replay it, take over the trials left running, launch the first ones."""
        self.told, warm = warmstart.load(self.spec)  # before the claim: a refused store leaves nothing behind
        claim_store(self.store, self.spec)
        if self.spec.optimizer.warm_start:
            self.store.put(WARM_START_OBJECT, warm.to_json())
            self.publisher.warm = warm
            log.info("warm_start", told=warm.total, stores=warm.told, left_out=warm.left_out)
        self.history = read_history(self.store, self.spec)
        log.info(
            "study_resumed" if self.history.launched else "study_started",
            study=self.spec.name,
            store=self.store.uri,
            finished=len(self.history.results),
            launcher=self.launcher.name,
        )
        for index in self.history.unfinished:
            req = self._request(index)
            if self.launcher.adopt(req):
                log.info("trial_adopted", index=index)
            else:
                # Same index, same params: at most one result is ever recorded.
                self._start_trial(req)
                log.info("trial_relaunched", index=index)
        self.on_progress(self)
        self.launch(self.decide())

    def _end(self) -> Outcome:
        summary = replace(summarize(self.spec, self.history.ordered_results()), ended_by=self.ended_by)
        confirmed = self.publisher.final(self.history, self.ended_by)
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

    def _wait(self) -> list[TrialExit]:
        if self.launcher.running():
            return self.launcher.wait(self.poll_s)
        time.sleep(min(self.poll_s, self.retries.next_in_s()))  # only lost trials, backing off
        return []

    # --- admit -----------------------------------------------------------------

    def admit(self) -> None:
        """Record, once per attempt, when a queue admitted a trial: what its queue wait was, and
        where its GPU hours start (controller.budgets)."""
        for index, (queued_at, admitted_at) in sorted(self.launcher.admitted().items()):
            self._admitted(index, queued_at, admitted_at)

    def _admitted(self, index: int, queued_at: float, admitted_at: float) -> None:
        if not self.history.queued(index):
            return  # recorded already (by this controller, or by one before it)
        record = AdmissionRecord(index, self.history.attempt(index), queued_at, admitted_at)
        # AlreadyExists: another controller's record of the same admission, from the same Job.
        with contextlib.suppress(AlreadyExists):
            self.store.create(admission_object(index, record.attempt), record.to_json())
        self.history.admissions.setdefault(index, {})[record.attempt] = record
        self.observer.trial_admitted(record)
        log.info("trial_admitted", index=index, attempt=record.attempt, queue=self.launcher.queue,
                 wait_s=round(record.wait_s, 1))  # fmt: skip

    # --- collect ---------------------------------------------------------------

    def collect(self, exits: list[TrialExit]) -> list[TrialResult]:
        """The results of the trials that ended; a trial lost to the infrastructure has none yet."""
        return [r for r in map(self._finish, exits) if r is not None]

    def _finish(self, ex: TrialExit) -> TrialResult | None:
        """Read (or, for a trial that could not write it, record) the result of a trial that ended;
        None when the infrastructure lost it and it is to be launched again."""
        launch = self.history.launched[ex.index]
        if ex.admission is not None:
            self._admitted(ex.index, *ex.admission)
        self.early_stopping.trial_exited(self.history, ex.index)
        result = self._read_result(ex.index)
        if result is None:
            pruned = self.early_stopping.pruned_for(self.history, ex.index)
            if pruned is None and self.retries.lost(self.history, ex):
                return None
            reason = (
                self.retries.exhausted(self.history, ex)
                if not ex.ok
                else "exited 0 but wrote no result record"
            )
            failure = failed_result(ex.index, launch.params, self.spec.objective.metric, reason,
                                    epoch_metrics=self.history.epoch_metrics(ex.index))  # fmt: skip
            result = self._record_for(pruned or failure)
        self.history.add_result(result)
        self.durations.append(time.time() - launch.launched_at)
        return result

    def _read_result(self, index: int) -> TrialResult | None:
        launch = self.history.launched[index]
        return read_result(self.store, index, launch, self.spec, self.history.attempt(index))

    def _record_for(self, result: TrialResult) -> TrialResult:
        """Write the record of a trial that could not (it failed, or was killed after a stop request)."""
        try:
            self.store.create(result_object(result.index), result.to_json())
            return result
        except AlreadyExists:
            # The trial wrote its own record after all (a late write): trust it, as far as it answers.
            return self._read_result(result.index) or result

    # --- decide ----------------------------------------------------------------

    def decide(self) -> Plan:
        """What to launch now, within the budgets and the free slots: lost trials due again first
        (their indices are handed out), then the search's next points or, once the search is over,
        the confirmation runs (budgets hold back the search, not the confirmation of what it found)."""
        searching = not self._search_over() and not self._budget_spent()
        if not searching and not self._search_over():
            return Plan()
        h = self.history
        slots = self._free_slots()
        again = tuple(self.retries.due()[: max(slots, 0)])
        slots -= len(again)
        if slots <= 0:
            return Plan(again)
        if not searching:
            runs = confirmation.missing(self.spec, h)[:slots]
            return Plan(again, tuple(self._record(h.next_index() + k, h.results[run.confirms].params,
                                                  confirms=run.confirms, seed=run.seed)
                                     for k, run in enumerate(runs)))  # fmt: skip
        room = min(slots, self.spec.budget.max_trials - h.searched) if not self._too_many_failures() else 0
        pending = [h.launched[i].params for i in sorted({*self.launcher.running(), *again})]
        new: list[LaunchRecord] = []
        for k in range(room):
            # The optimizer counts search trials: a confirmation run before (a study extended after
            # its confirmation) takes an index, not a place in the initial design.
            params = optimizer.suggest(self.spec, h.searched + k, h.ordered_results(), pending, self.told)
            new.append(self._record(h.next_index() + k, params))
            pending.append(params)
        return Plan(again, tuple(new))

    def _free_slots(self) -> int:
        """Trials to launch now: up to ``parallel`` running and, with a queue, up to ``max_queued``
        of them waiting in it. A point is chosen when its trial is launched, so one waiting for a
        quota slot was chosen on older results than one launched when the slot opened (BENCHMARKS.md
        section 10). The loop turns every ``poll_s``, exits or not: an admission seen by the admit
        stage frees a place in the queue within a turn."""
        running, waiting = self._in_flight()
        free = self.spec.budget.parallel - running
        if self.launcher.queue is None:
            return free
        return min(free, self.spec.budget.max_queued - waiting)

    def _record(self, index: int, params: Params, **confirming: int | None) -> LaunchRecord:
        return LaunchRecord(index, params, time.time(), self.launcher.name, self.launcher.gpus,
                            queue=self.launcher.queue, **confirming)  # type: ignore[arg-type]  # fmt: skip

    def _too_many_failures(self) -> bool:
        return self.history.failed >= self.spec.budget.max_failed

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
                    self.history.add_result(self._record_for(failure))
        return self.ended_by is not None

    # --- launch ----------------------------------------------------------------

    def launch(self, plan: Plan) -> None:
        """Start the plan's trials: each new one's launch record written first; an index another
        controller took meanwhile ends the plan (the history is read again, the next turn decides)."""
        for index in plan.again:
            self._start_trial(self._request(index))
        for record in plan.new:
            try:
                self.store.create(params_object(record.index), record.to_json())
            except AlreadyExists:
                # Someone else handed this index out: their record wins; re-read.
                log.warning("index_taken", index=record.index)
                self.history = read_history(self.store, self.spec)
                return
            self.history.launched[record.index] = record
            self._start_trial(self._request(record.index))

    def _start_trial(self, req: TrialRequest) -> None:
        self.launcher.launch(req)
        self.retries.launched(req.index)
        self.observer.trial_started(req)

    def _request(self, index: int) -> TrialRequest:
        launch = self.history.launched[index]
        return TrialRequest(
            store=self.store.uri,
            study=self.spec.name,
            index=index,
            params=self.spec.full_params(launch.params),
            objective=self.spec.objective.metric,
            settings=confirmation.settings_for(self.spec, launch),
            attempt=self.history.attempt(index),
            # A confirmation run keeps its model: the winner's is the study's.
            save_model=self.history.confirming(index) and self.spec.kind.saves_model,
        )

    # --- publish ---------------------------------------------------------------

    def publish(self, finished: list[TrialResult], progressed: bool) -> None:
        """best.json and history.csv, then each finished trial's annotations, Event and log line;
        the count of trials running and queued whenever it changed."""
        in_flight = self._in_flight()
        if in_flight != self.in_flight:
            self.in_flight = in_flight
            self.observer.trials_in_flight(*in_flight)
        if not finished and not progressed:
            return
        self.publisher.views(self.history, self.ended_by)
        summary = summarize(self.spec, self.history.ordered_results())
        for result in finished:
            self.observer.trial_finished(result, summary, self.history.attempt(result.index))
            log.info(f"trial_{result.status}", index=result.index, value=result.objective_value,
                     reason=result.reason, params=result.params)  # fmt: skip

    def _in_flight(self) -> tuple[int, int]:
        """(running, queued): the trials launched and not ended, and of those the ones a queue
        has not admitted yet."""
        running = self.launcher.running()
        return len(running), sum(self.history.queued(i) for i in running)

    # --- progress -------------------------------------------------------------

    def _next_exit_in_s(self) -> float | None:
        """When the first running trial should finish, from the mean trial time so far."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        launched = self.history.launched
        starts = [launched[i].launched_at for i in self.launcher.running() if i in launched]
        return min(starts) + mean - time.time() if starts else None

    def eta_s(self) -> float | None:
        """Seconds to go: mean trial time times the rounds of trials left."""
        if not self.durations:
            return None
        left = self.spec.budget.max_trials - len(self.history.ordered_results())
        rounds = -(-left // self.spec.budget.parallel)
        return rounds * sum(self.durations) / len(self.durations)


def claim_store(store: Store, spec: Spec) -> None:
    """Write the spec snapshot, or check that the store holds this same study."""
    snapshot = spec.to_yaml().encode()
    try:
        store.create(SPEC_OBJECT, snapshot)
        return
    except AlreadyExists:
        pass
    stored = read_spec(store).to_dict()
    wanted = spec.to_dict()
    for key in wanted:
        if key not in RESUMABLE_CHANGES and stored.get(key) != wanted[key]:
            raise UsageError(
                f"{key}: differs from the study already in {store.uri} "
                "(resume with the same spec, or use another store)"
            )
    if stored != wanted:
        store.put(SPEC_OBJECT, snapshot)
