"""The built-in kind's training: the notebook's CNN, trained and evaluated once.

Its declaration (settings, metrics, hyperparameters) is :mod:`kubetune.kinds.cnn`.
TensorFlow is imported only once there is work to do: importing this module
stays cheap for the CLI, and a rerun of a recorded trial exits in a second.

Every trial of a study trains with the same seed (``settings.seed``): weight
initialisation and shuffling are then the same for all of them, so results
differ by their hyperparameters, not by luck of the draw.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

from kubetune import __version__
from kubetune.contract import Status, StopRequest, TrialRequest, TrialResult
from kubetune.kinds import CNN
from kubetune.store import Store
from kubetune.trial.epochs import EpochReporter


def train(req: TrialRequest, store: Store, started: float, log: Any) -> TrialResult:
    """Train and evaluate the CNN of ``req``; a failed result when the loss turns non-finite."""
    s = CNN.settings_with(req.settings, req.params)  # a searched epochs or batch_size wins
    # Must be set before TensorFlow loads; it silences most of its C++ logging.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from kubetune.trial import dataset, model

    keras.utils.set_random_seed(s.seed)
    # Before the model is built: layers take their dtypes from the policy.
    keras.mixed_precision.set_global_policy(s.precision)
    train, val, test, counts = dataset.load_splits(s, dataset.ensure(dataset.data_dir(), store))
    net = model.build_model(req.params)
    param_count = net.count_params()
    common: dict[str, Any] = {"seed": s.seed, "versions": _versions()}
    log.info("training", params=req.params, epochs=s.epochs, images=counts, param_count=param_count,
             precision=s.precision)  # fmt: skip

    reporter = EpochReporter(store, req.index, CNN.bounds)
    fit, epoch_times, stop = train_epochs(net, train, val, s.epochs, log, reporter)
    record = _Recorder(req, started, epoch_times, common, reporter.curve, {"param_count": param_count})
    if stop is not None:
        # The epoch it reached, and its metrics there; never evaluated on the test split.
        epoch = reporter.last_epoch or 0
        metrics = {m: float(fit[m][epoch - 1]) for m in EPOCH_METRICS} if epoch else {}
        return record("pruned", epoch, metrics, metrics.get(req.objective), reason=stop.reason)
    loss = fit["loss"][-1]
    if not math.isfinite(loss):
        return record(
            "failed", None, {}, None, reason=f"loss became {_word(loss)} at epoch {len(fit['loss'])}"
        )
    test_metrics = net.evaluate(test, verbose=0, return_dict=True)

    metrics = {
        "loss": float(fit["loss"][-1]),
        "accuracy": float(fit["accuracy"][-1]),
        "val_loss": float(fit["val_loss"][-1]),
        "val_accuracy": float(fit["val_accuracy"][-1]),
        "test_loss": float(test_metrics["loss"]),
        "test_accuracy": float(test_metrics["accuracy"]),
    }
    for metric, value in metrics.items():
        if not math.isfinite(value):
            return record("failed", None, {}, None, reason=f"{metric} became {_word(value)}")
    metrics["images_per_s"] = _images_per_s(counts["train"], epoch_times)
    if req.save_model:
        # Before the result: a recorded run asked for its model always has it.
        log.info("model_saved", object=model.upload(net, store, req.index))
    return record("succeeded", len(epoch_times), metrics, metrics[req.objective])


@dataclass(frozen=True)
class _Recorder:
    """Builds the trial's one record: what every outcome shares, and what its own says."""

    req: TrialRequest
    started: float
    epoch_times: list[float]
    common: dict[str, Any]
    curve: list[dict[str, float]]
    measured: dict[str, float]  # metrics of the model itself, whatever the outcome (its size)

    def __call__(
        self, status: Status, epoch: int | None, metrics: dict[str, float], value: float | None, **extra: Any
    ) -> TrialResult:
        finished = time.time()
        times = self.epoch_times if epoch is None else self.epoch_times[:epoch]
        curve = self.curve if epoch is None else self.curve[:epoch]
        return TrialResult(index=self.req.index, status=status, params=self.req.params,
                           objective=self.req.objective, objective_value=value,
                           metrics={**metrics, **self.measured} if metrics else {},
                           wall_time_s=finished - self.started, epoch_times_s=times, started_at=self.started,
                           finished_at=finished, last_epoch=epoch, epoch_metrics=curve, **extra,
                           **self.common)  # fmt: skip


# A stop request is also looked for during an epoch, at most this often: an
# epoch of the full dataset takes minutes on a CPU, and a pruned trial should
# give its GPU back within seconds, at a bounded cost in store reads.
STOP_CHECK_S = 5.0
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def train_epochs(
    net: Any, train: Any, val: Any, epochs: int, log: Any, reporter: EpochReporter | None = None
) -> tuple[dict[str, list[float]], list[float], StopRequest | None]:
    """Train for ``epochs``, validating after each: the Keras history, training seconds per
    epoch, and the stop request that ended training early, if one did.

    One fit() for all epochs: a fit() per epoch re-creates the input
    iterators every epoch, and tearing down the last one often held that fit()
    for ~3 s after its last batch (0.67x the images/s; bench/throughput.py).
    A non-finite loss stops training at the end of its epoch; a stop request
    (``reporter``) after the batch that sees it.
    """
    import keras

    class EpochLog(keras.callbacks.Callback):  # type: ignore[misc]
        """Training time apart from validation (which runs between the two), each epoch's
        record, and the NaN and stop-request stops."""

        stop: StopRequest | None = None
        checked = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = self.t1 = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if reporter is None or time.monotonic() - self.checked < STOP_CHECK_S:
                return
            self.checked = time.monotonic()
            self.stop = reporter.stop_requested()
            self.model.stop_training = self.stop is not None

        def on_test_begin(self, logs: Any = None) -> None:
            self.t1 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.stop is not None:
                return  # stopped within this epoch: it did not finish, so it is no epoch
            logs = logs or {}
            now = time.perf_counter()
            train_s = (self.t1 if self.t1 > self.t0 else now) - self.t0
            times.append(train_s)
            if not math.isfinite(logs.get("loss", math.nan)):
                self.model.stop_training = True
                return
            log.info("epoch", epoch=epoch + 1, loss=logs["loss"], accuracy=logs.get("accuracy"),
                     val_accuracy=logs.get("val_accuracy"), train_s=round(train_s, 3),
                     val_s=round(now - self.t1, 3))  # fmt: skip
            if reporter is not None:
                stop = reporter.report(epoch + 1, {m: float(logs[m]) for m in EPOCH_METRICS})
                self.checked = time.monotonic()
                # After the last epoch the work is done: a late request finds a finished trial.
                if epoch + 1 < epochs:
                    self.stop = stop
                    self.model.stop_training = stop is not None

    times: list[float] = []
    callback = EpochLog()
    history = net.fit(
        train, epochs=epochs, validation_data=val, shuffle=False, verbose=0, callbacks=[callback]
    ).history
    return history, times, callback.stop


def _images_per_s(images: int, epoch_times: list[float]) -> float:
    """Training throughput over the steady epochs.

    Epoch 1 also traces the graph and decodes the images into the cache, so it
    is left out when there are later epochs to measure.
    """
    steady = epoch_times[1:] or epoch_times
    return images * len(steady) / sum(steady)


def _word(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite"


def _versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow
    import tensorflow_datasets

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tensorflow_datasets.__version__,
        "numpy": numpy.__version__,
        "kubetune": __version__,
    }
