"""A running trial's side of early stopping: report each epoch, hear a stop request.

Two store operations per epoch, whatever the kind: one write-once create of
the epoch's metrics, one read of the trial's stop object. Nothing runs
between epochs, so an idle trial costs the store nothing.
"""

from __future__ import annotations

import contextlib
import time

from kubetune.contract import EpochRecord, MetricBounds, RecordError, StopRequest, epoch_object, stop_object
from kubetune.store import AlreadyExists, NotFound, Store, Unreadable


class EpochReporter:
    def __init__(self, store: Store, index: int, bounds: MetricBounds) -> None:
        self.store = store
        self.index = index
        self.bounds = bounds
        self.last_epoch: int | None = None
        self.curve: list[dict[str, float]] = []  # each epoch's metrics as reported, epoch 1 first

    def report(self, epoch: int, metrics: dict[str, float]) -> StopRequest | None:
        """Record ``epoch``'s metrics; the controller's stop request, if it made one."""
        record = EpochRecord(self.index, epoch, metrics, time.time())
        # AlreadyExists: a rerun of this index got this far before; its curve stands.
        with contextlib.suppress(AlreadyExists):
            self.store.create(epoch_object(self.index, epoch), record.to_json(self.bounds))
        self.last_epoch = epoch
        self.curve.append(dict(metrics))
        return self.stop_requested()

    def stop_requested(self) -> StopRequest | None:
        """The controller's stop request; one that cannot be read is as if never made (so the
        controller reads it too), and the trial runs on until it is stopped from outside."""
        try:
            return StopRequest.from_json(self.store.get(stop_object(self.index)))
        except (NotFound, Unreadable, RecordError):
            return None
