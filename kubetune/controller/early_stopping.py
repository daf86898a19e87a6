"""Early stopping as the study loop runs it: follow the running trials' curves, stop the hopeless.

Everything goes through the store, the same locally and in a cluster: a
trial writes one record per epoch; this reads them (one listing of the
trial's own prefix every ``POLL_S``, one read per new record), asks the rule
(:mod:`kubetune.controller.stopping`), and writes the trial's stop request,
which the trial reads between epochs and answers with a ``pruned`` record. A
trial still running ``stopping.grace_period_s`` after its request is stopped
through its launcher (the Job deleted), and its pruned record written for it.
"""

from __future__ import annotations

import contextlib
import time

from kubetune.contract import RecordError, StopRequest, TrialResult, stop_object
from kubetune.controller.history import History
from kubetune.controller.observer import StudyObserver
from kubetune.controller.stopping import Curves, stopping_rule
from kubetune.launcher import Launcher
from kubetune.log import get_logger
from kubetune.spec import Spec
from kubetune.store import AlreadyExists, NotFound, Store

log = get_logger("kubetune.early_stopping")

# Store operations per running trial: one listing every POLL_S (12 a minute),
# plus one read per epoch it reports; finished trials cost nothing.
POLL_S = 5.0


class EarlyStopping:
    def __init__(
        self, spec: Spec, store: Store, launcher: Launcher, observer: StudyObserver, poll_s: float = POLL_S
    ) -> None:
        self.spec = spec
        self.store = store
        self.launcher = launcher
        self.observer = observer
        self.rule = stopping_rule(spec)
        self.sign = 1.0 if spec.objective.goal == "maximize" else -1.0
        self.poll_s = poll_s
        self._polled_at = -poll_s
        self._killed: set[int] = set()

    def poll(self, history: History) -> bool:
        """Read new epochs of running trials (at most every ``poll_s``), stop those the rule says to;
        whether any trial reported a new epoch."""
        if time.monotonic() - self._polled_at < self.poll_s:
            return False
        self._polled_at = time.monotonic()
        progressed = False
        for index in sorted(self.launcher.running()):
            for record in history.add_epochs(self.store, index, self.spec):
                progressed = True
                self.observer.trial_progressed(record, history.attempt(index))
                # A confirmation run is measured whole: no rule stops it.
                if index not in history.stops and not history.confirming(index):
                    self._decide(history, index, record.epoch)
        self._stop_overdue(history)
        return progressed

    def trial_exited(self, history: History, index: int) -> None:
        """Complete the curve of a trial that ended (its last epochs may not have been read yet)."""
        history.add_epochs(self.store, index, self.spec)

    def pruned_for(self, history: History, index: int) -> TrialResult | None:
        """The pruned record of a trial asked to stop that exited without writing its own, else None."""
        stop = history.stops.get(index)
        launch = history.launched.get(index)
        if stop is None or launch is None:
            return None
        epochs = history.epochs.get(index, {})
        last = max(epochs, default=None)
        metrics = epochs[last].metrics if last is not None else {}
        objective = self.spec.objective.metric
        why = "killed" if index in self._killed else "exited"
        return TrialResult(
            index=index,
            status="pruned",
            params=launch.params,
            objective=objective,
            objective_value=metrics.get(objective),
            reason=f"{stop.reason} (the trial {why} without its own record)",
            metrics=dict(metrics),
            last_epoch=last,
            epoch_metrics=history.epoch_metrics(index),
        )

    def _decide(self, history: History, index: int, epoch: int) -> None:
        def curve(i: int) -> list[float]:
            return history.curve(i, self.spec.objective.metric, self.sign)

        mine = curve(index)
        if len(mine) < epoch:
            return  # a hole in the curve: nothing to compare at this epoch
        results = history.ordered_results()
        curves = Curves(
            running={i: curve(i) for i in self.launcher.running() if i != index and not history.confirming(i)}
            | {index: mine[:epoch]},
            completed={r.index: curve(r.index) for r in results if r.succeeded},
            stopped={r.index: curve(r.index) for r in results if r.pruned},
        )
        reason = self.rule.should_stop(index, curves)
        if reason is not None:
            self._request_stop(history, index, f"{reason} (epoch {epoch})")

    def _request_stop(self, history: History, index: int, reason: str) -> None:
        request = StopRequest(index, reason, time.time())
        try:
            self.store.create(stop_object(index), request.to_json())
        except AlreadyExists:
            # A controller before this one asked already: its request, and its clock, stand.
            with contextlib.suppress(RecordError, NotFound):
                request = StopRequest.from_json(self.store.get(stop_object(index)))
        history.stops[index] = request
        log.info("trial_stop_requested", index=index, reason=request.reason)

    def _stop_overdue(self, history: History) -> None:
        grace = self.spec.stopping.grace_period_s
        for index in sorted(self.launcher.running() - self._killed):
            stop = history.stops.get(index)
            if stop is not None and time.time() - stop.at > grace:
                log.warning("trial_stop_overdue", index=index, grace_period_s=grace)
                self.launcher.stop(index)
                self._killed.add(index)
