"""The study loop's publishing stage: the store's views after every trial, the report beside the loop.

best.json and history.csv are rewritten in the loop (milliseconds); the plots
and report.html take a second to tens of seconds at a few hundred trials, so
they are drawn in a thread of their own, from a snapshot, at most every
PLOTS_EVERY_S and never while a trial is about to finish (its successor's
launch comes first). Once the confirmation phase has a winner, its model is
copied beside best.json.
"""

from __future__ import annotations

import threading
import time

from kubetune.contract import TrialResult, WarmStartRecord
from kubetune.controller import confirmation, views
from kubetune.controller.confirmation import Confirmation
from kubetune.controller.history import Epochs, History, Lost
from kubetune.spec import Spec
from kubetune.store import Store

PLOTS_EVERY_S = 10.0
# A redraw waits while a trial is due to finish before it would be done
# (launching the next trial comes first), but never past this.
PLOTS_MAX_STALE_S = 60.0


class Publisher:
    def __init__(self, spec: Spec, store: Store, warm: WarmStartRecord | None = None) -> None:
        self.spec = spec
        self.store = store
        self.warm = warm
        self._drawn_at = time.monotonic()  # nothing to draw before the first result
        self._draw_s = 1.0  # what a redraw costs; measured after the first
        self._stale = False
        self._drawing: threading.Thread | None = None  # a redraw in progress
        self._model_from: int | None = None  # the run whose model is in the store as model.keras

    def views(self, history: History, ended_by: str | None) -> None:
        """best.json and history.csv, now; the plots and report marked stale."""
        views.publish(self.store, self.spec, history.ordered_results(), epochs=history.search_epochs(),
                      plots=False, ended_by=ended_by, confirmed=self.confirmed(history),
                      waits=history.trial_waits())  # fmt: skip
        self._stale = True

    def redraw_if_due(self, history: History, next_exit_in_s: float | None) -> None:
        """The plots and report.html in a thread, when :func:`redraw_due` says so; one at a time.

        At a few hundred trials a redraw takes tens of seconds of CPU (the
        objective plot's model); drawn in the loop it held up every launch
        meanwhile (bench/kwok.py: 100 trials in parallel, stalls of 9-63 s).
        The thread draws from a snapshot, so the loop may go on changing the
        history.
        """
        if not self._stale or (self._drawing is not None and self._drawing.is_alive()):
            return
        if not redraw_due(time.monotonic() - self._drawn_at, self._draw_s, next_exit_in_s):
            return
        self._drawn_at = time.monotonic()
        self._stale = False
        snapshot = (
            history.ordered_results(),
            {i: dict(e) for i, e in history.search_epochs().items()},
            {i: list(a) for i, a in history.lost.items()},
            self.confirmed(history),
            history.trial_waits(),
        )
        self._drawing = threading.Thread(target=self._draw, args=snapshot, name="kubetune-plots", daemon=True)
        self._drawing.start()

    def _draw(
        self,
        results: list[TrialResult],
        epochs: Epochs,
        lost: Lost,
        confirmed: Confirmation | None,
        waits: dict[int, float],
    ) -> None:
        t0 = time.monotonic()
        views.redraw(self.store, self.spec, results, epochs, lost, confirmed, self.warm, waits)
        self._draw_s = time.monotonic() - t0

    def final(self, history: History, ended_by: str | None) -> Confirmation | None:
        """Every view, the report last of all (after a redraw still in progress); the confirmation phase."""
        confirmed = self.confirmed(history)
        if self._drawing is not None:
            self._drawing.join()
        views.publish(self.store, self.spec, history.ordered_results(), epochs=history.search_epochs(),
                      ended_by=ended_by, lost=history.lost, confirmed=confirmed, warm=self.warm,
                      waits=history.trial_waits())  # fmt: skip
        return confirmed

    def confirmed(self, history: History) -> Confirmation | None:
        """The confirmation phase as it stands; once it has a winner, its model copied beside best.json."""
        confirmed = confirmation.review(self.spec, history)
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
