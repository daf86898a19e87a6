"""``kubetune trial``: train and evaluate one CNN, then write its result to the store once.

The command line and the record are defined in :mod:`kubetune.contract`.
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
import sys
import time
from typing import Any

from kubetune import __version__
from kubetune.contract import (
    EXIT_ALREADY_RECORDED,
    EXIT_OK,
    EXIT_TRIAL_FAILED,
    TrialRequest,
    TrialResult,
    failed_result,
    parse_trial_args,
    result_object,
)
from kubetune.errors import KubetuneError, UsageError
from kubetune.log import get_logger
from kubetune.store import AlreadyExists, NotFound, Store, open_store


def main(argv: list[str]) -> int:
    """Run one trial; returns a ``contract.EXIT_*`` code, or a KubetuneError's exit code."""
    started = time.time()
    req = parse_trial_args(argv)
    log = get_logger("kubetune.trial", study=req.study, index=req.index)
    try:
        return _run(req, started, log)
    except KubetuneError as exc:
        log.error("trial could not run", error=str(exc))
        return exc.exit_code


def _run(req: TrialRequest, started: float, log: Any) -> int:
    store = open_store(req.store)
    name = result_object(req.index)
    if _exists(store, name):
        log.info("already recorded; not training", object=name)
        return EXIT_ALREADY_RECORDED
    result = _train(req, store, started, log)
    try:
        store.create(name, result.to_json())
    except AlreadyExists:
        log.warning("already recorded by another run; result discarded", object=name)
        return EXIT_ALREADY_RECORDED
    log.info(
        "recorded",
        object=name,
        status=result.status,
        objective_value=result.objective_value,
        reason=result.reason,
        wall_time_s=result.wall_time_s,
    )
    return EXIT_OK if result.succeeded else EXIT_TRIAL_FAILED


def _exists(store: Store, name: str) -> bool:
    try:
        store.get(name)
    except NotFound:
        return False
    return True


def _train(req: TrialRequest, store: Store, started: float, log: Any) -> TrialResult:
    s = req.settings
    if s.epochs < 1:
        raise UsageError(f"--epochs: must be at least 1, got {s.epochs}")
    # Must be set before TensorFlow loads; it silences most of its C++ logging.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from kubetune import dataset, model

    keras.utils.set_random_seed(s.seed)
    train, val, test, counts = dataset.load_splits(s, dataset.ensure(dataset.data_dir(), store))
    net = model.build_model(req.params)
    common: dict[str, Any] = {"param_count": net.count_params(), "seed": s.seed, "versions": _versions()}
    log.info("training", params=req.params, epochs=s.epochs, images=counts, param_count=common["param_count"])

    # One fit() per epoch, so training time is measured apart from validation
    # (epoch_times_s holds training seconds only) and a non-finite loss stops
    # the trial at the end of its epoch.
    epoch_times: list[float] = []
    for epoch in range(1, s.epochs + 1):
        t0 = time.perf_counter()
        fit = net.fit(train, epochs=epoch, initial_epoch=epoch - 1, shuffle=False, verbose=0).history
        epoch_times.append(time.perf_counter() - t0)
        loss = fit["loss"][-1]
        if not math.isfinite(loss):
            return _failed(req, f"loss became {_word(loss)} at epoch {epoch}", started, epoch_times, common)
        t1 = time.perf_counter()
        val_metrics = net.evaluate(val, verbose=0, return_dict=True)
        log.info(
            "epoch",
            epoch=epoch,
            loss=loss,
            accuracy=fit["accuracy"][-1],
            val_accuracy=val_metrics["accuracy"],
            train_s=round(epoch_times[-1], 3),
            val_s=round(time.perf_counter() - t1, 3),
        )
    test_metrics = net.evaluate(test, verbose=0, return_dict=True)

    metrics = {
        "loss": float(fit["loss"][-1]),
        "accuracy": float(fit["accuracy"][-1]),
        "val_loss": float(val_metrics["loss"]),
        "val_accuracy": float(val_metrics["accuracy"]),
        "test_loss": float(test_metrics["loss"]),
        "test_accuracy": float(test_metrics["accuracy"]),
    }
    for metric, value in metrics.items():
        if not math.isfinite(value):
            return _failed(req, f"{metric} became {_word(value)}", started, epoch_times, common)
    finished = time.time()
    return TrialResult(
        index=req.index,
        status="succeeded",
        params=req.params,
        objective=req.objective,
        objective_value=metrics[req.objective],
        metrics=metrics,
        wall_time_s=finished - started,
        epoch_times_s=epoch_times,
        images_per_s=_images_per_s(counts["train"], epoch_times),
        started_at=started,
        finished_at=finished,
        **common,
    )


def _images_per_s(images: int, epoch_times: list[float]) -> float:
    """Training throughput over the steady epochs.

    Epoch 1 also traces the graph and decodes the images into the cache, so it
    is left out when there are later epochs to measure.
    """
    steady = epoch_times[1:] or epoch_times
    return images * len(steady) / sum(steady)


def _failed(
    req: TrialRequest, reason: str, started: float, epoch_times: list[float], common: dict[str, Any]
) -> TrialResult:
    finished = time.time()
    return failed_result(
        req.index,
        req.params,
        req.objective,
        reason,
        wall_time_s=finished - started,
        epoch_times_s=epoch_times,
        started_at=started,
        finished_at=finished,
        **common,
    )


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
