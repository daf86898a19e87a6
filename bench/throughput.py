"""1. Trial throughput: our input pipeline and training loop against the notebook's.

Every measurement is a fresh process, as a trial is, so TensorFlow's thread
pools and caches start cold each time and thread settings can be applied
before TensorFlow starts:

* ``kubetune``: the real ``kubetune trial`` command line, with an empty data
  dir and a local store holding the pushed dataset, so its wall time covers
  process start, imports, fetching the dataset from the store, training and
  evaluation. Epoch times come from its result record.
* ``notebook``: a worker (``python -m bench.throughput WORKER_JSON``) running
  the notebook's pipeline on the same 54,000 training images:
  ``map(normalize).repeat().shuffle(60000).batch(512)`` and
  ``fit(epochs=3, steps_per_epoch=ceil(n/512))``, on the same model.
* ``kubetune``, ``precision: mixed_bfloat16``: the same trial with the opt-in
  16-bit compute (this CPU has AVX512_BF16), accuracy shown beside it.
* variants of ours (the training loop before, XLA, thread settings, cache
  and prefetch), the notebook's pipeline, and no input pipeline at all (the
  model's own speed: the most any pipeline could reach), in the same worker,
  three epochs each, like the trials.

Images/s is that of the fastest steady epoch of a run (epoch 1 traces the
graph and fills the cache or the shuffle buffer). Other tenants of this
shared host slow whole epochs down, by up to 2x (epochs of 8 s and of 18 s
in one run, 2026-11-27), and never speed one up: the fastest epoch is the
best estimate of the pipeline's own speed, and a ratio of two runs' means
would mostly measure who was unlucky.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, Context, Section, interleave, machine, median, paired_ratio, table
from kubetune.contract import TrialRequest, result_object, trial_command
from kubetune.kinds import CnnSettings

BATCH = 512
MODELS = {
    "1x12": {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12},
    "1x296": {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 296},
}
ROUNDS = 3
TARGET_RATIO = 1.3
TARGET_STARTUP_S = 10.0
KUBETUNE_BIN = str(Path(PYTHON).parent / "kubetune")


@dataclass(frozen=True)
class Worker:
    """One measured training process; JSON on its command line."""

    pipeline: str  # "notebook" | "kubetune"; the trial's own pipeline for anything but "notebook"
    params: dict[str, Any]
    data_dir: str
    epochs: int = 3
    train_subset: int | None = None  # None: the 54,000 images our trials train on
    validation_split: float = 0.1  # smoke runs validate on fewer
    xla: bool = False
    inter_op: int = 0  # 0: TensorFlow's default
    intra_op: int = 0
    train_pipeline: str = ""  # "": dataset.load_splits as is; else one of _train_pipeline's
    per_epoch_fit: bool = False  # one fit() per epoch, as kubetune/trial/cnn.py did before


# Variants of our pipeline, tried on 1x12; "as is" is the reference for their ratios.
NOTEBOOK_VARIANT = "the notebook's pipeline (cells 4, 6, 7)"
CEILING_VARIANT = "no input pipeline: the images as ready-made batches in memory (the model alone)"
VARIANTS: dict[str, dict[str, Any]] = {
    "as is": {},
    NOTEBOOK_VARIANT: {"pipeline": "notebook"},
    CEILING_VARIANT: {"train_pipeline": "none"},
    "one fit() per epoch (trial/cnn.py before)": {"per_epoch_fit": True},
    "XLA jit_compile=True": {"xla": True},
    "threads inter 1 / intra 2": {"inter_op": 1, "intra_op": 2},
    "normalize before cache (float32 cache)": {"train_pipeline": "normalize, cache"},
    "uint8 cache, parallel map, no prefetch": {"train_pipeline": "no prefetch"},
}
# The headline's trials: our default, and the opt-in 16-bit compute.
TRIALS = {"kubetune": "float32", "kubetune bf16": "mixed_bfloat16"}


def run(ctx: Context) -> Section:
    data_dir = prepared_data_dir(ctx)
    store = store_with_dataset(ctx, data_dir)
    # Smoke: a few hundred images to train on, 600 to validate on, 256 to test on.
    subset, split = (512, 0.01) if ctx.smoke else (None, 0.1)
    epochs = 1 if ctx.smoke else 3
    models = {"1x12": MODELS["1x12"]} if ctx.smoke else MODELS
    counter = iter(range(10**6))

    def one(name: str) -> dict[str, Any]:
        table_name, variant = name.split(":", 1)
        if table_name == "variant":
            base = Worker("kubetune", MODELS["1x12"], str(data_dir), epochs, subset, split)
            return timed_worker(replace(base, **VARIANTS[variant]))
        pipeline, model = variant.rsplit(" ", 1)
        if pipeline in TRIALS:
            return kubetune_trial(
                store, next(counter), models[model], epochs, subset, ctx.work, split, TRIALS[pipeline]
            )
        return timed_worker(Worker("notebook", models[model], str(data_dir), epochs, subset, split))

    heads = [f"head:{p} {m}" for m in models for p in ("notebook", *TRIALS)]
    variants = [f"variant:{v}" for v in (["as is", CEILING_VARIANT] if ctx.smoke else VARIANTS)]
    # The headline pairs and the variants are separate comparisons: each is interleaved on its own.
    rounds = 1 if ctx.smoke else ROUNDS
    if ctx.smoke:
        runs = interleave(heads + variants, 1, one, concurrent=True)
    else:
        runs = {**interleave(heads, rounds, one), **interleave(variants, rounds, one)}
    headline = {k.split(":", 1)[1]: v for k, v in runs.items() if k.startswith("head:")}
    extra = {k.split(":", 1)[1]: v for k, v in runs.items() if k.startswith("variant:")}
    return _section(headline, extra, models, epochs)


def prepared_data_dir(ctx: Context) -> Path:
    """Fashion-MNIST as a tfds data dir, prepared once (bench/.cache, or the test session's)."""
    if ctx.data_dir is not None:
        return ctx.data_dir
    out = subprocess.run(
        [KUBETUNE_BIN, "dataset", "prepare", "--data-dir", str(ctx.work.parent / "tensorflow_datasets")],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def store_with_dataset(ctx: Context, data_dir: Path) -> Path:
    """A local store holding the pushed dataset, as `kubetune dataset push` leaves it; one per run."""

    def push() -> Path:
        from kubetune.store import open_store
        from kubetune.trial import dataset

        store = ctx.work / "store-with-dataset"
        dataset.push(open_store(str(store)), data_dir)
        return store

    return ctx.once("store-with-dataset", push)


# --- the two whole trials -------------------------------------------------------


def kubetune_trial(
    store: Path,
    index: int,
    params: dict[str, Any],
    epochs: int,
    subset: int | None,
    work: Path,
    split: float,
    precision: str,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``kubetune trial`` as a Job runs it, with an empty data dir: fetches the dataset from the store."""
    settings = CnnSettings(epochs=epochs, batch_size=BATCH, train_subset=subset, validation_split=split,
                             test_subset=256 if subset else None, precision=precision)  # fmt: skip
    req = TrialRequest(str(store), "throughput", index, params, settings, "val_accuracy")
    argv = [KUBETUNE_BIN, *trial_command(req)[1:]]
    with tempfile.TemporaryDirectory(dir=work, prefix="data-") as fresh:
        env = {
            **os.environ,
            "KUBETUNE_DATA_DIR": fresh,
            "KUBETUNE_LOG_FORMAT": "json",
            "KUBETUNE_FASHION_MNIST_SOURCE": str(Path(fresh) / "none"),
            **(extra_env or {}),
        }
        t0 = time.time()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"kubetune trial exited {proc.returncode}: {proc.stderr[-2000:]}")
    result = json.loads((store / result_object(index)).read_text())
    return {
        "wall_s": wall,
        "startup_s": _logged_at(proc.stderr, "training") - t0,
        "epoch_s": result["epoch_times_s"],
        "images": _train_images(subset),
        "val_accuracy": result["metrics"]["val_accuracy"],
    }


def _logged_at(stderr: str, event: str) -> float:
    """When the trial logged ``event`` (its JSON log lines carry ISO timestamps)."""
    for line in stderr.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            if doc.get("event") == event:
                return datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp()
    raise RuntimeError(f"no {event!r} line in the trial's log")


def _train_images(subset: int | None) -> int:
    return subset or 54_000


def timed_worker(worker: Worker) -> dict[str, Any]:
    t0 = time.time()
    proc = subprocess.run(
        [PYTHON, "-m", "bench.throughput", json.dumps(asdict(worker))],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"worker {worker} exited {proc.returncode}: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    out["startup_s"] = out.pop("fit_started_at") - t0
    return out


# --- inside a worker process ----------------------------------------------------


@dataclass
class EpochClock:
    """Training seconds per epoch, for a single fit() over several epochs."""

    times: list[float] = field(default_factory=list)
    _t0: float = 0.0

    def callback(self) -> Any:
        import keras

        clock = self

        class _Cb(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                clock._t0 = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                clock.times.append(time.perf_counter() - clock._t0)

        return _Cb()


def work(w: Worker) -> dict[str, Any]:
    """Train as ``w`` says; epoch times and validation accuracy."""
    import tensorflow as tf

    # Thread pools are fixed when TensorFlow's runtime starts: set them first.
    tf.config.threading.set_inter_op_parallelism_threads(w.inter_op)
    tf.config.threading.set_intra_op_parallelism_threads(w.intra_op)
    import keras

    from kubetune.log import get_logger
    from kubetune.trial import cnn, dataset, model

    keras.utils.set_random_seed(0)
    settings = CnnSettings(
        epochs=w.epochs, batch_size=BATCH, train_subset=w.train_subset, validation_split=w.validation_split
    )
    train, val, _, counts = dataset.load_splits(settings, Path(w.data_dir))
    net = model.build_model(w.params)
    if w.xla:
        net.compile(
            optimizer=keras.optimizers.Adam(learning_rate=w.params["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=True,
        )
    if w.train_pipeline == "none":
        train = _no_pipeline(Path(w.data_dir), counts["train"])
        counts["train"] -= counts["train"] % BATCH  # whole batches only
    elif w.train_pipeline:
        train = _train_pipeline(Path(w.data_dir), counts["train"], w.train_pipeline)
    fit_started = time.time()
    if w.pipeline == "notebook":
        epochs = _notebook_fit(net, Path(w.data_dir), counts["train"], w.epochs)
    elif w.per_epoch_fit:
        epochs = _per_epoch_fit(net, train, val, w.epochs)
    else:
        epochs = cnn.train_epochs(net, train, val, w.epochs, get_logger("bench.throughput"))[1]
    val_accuracy = float(net.evaluate(val, verbose=0, return_dict=True)["accuracy"])
    return {
        "fit_started_at": fit_started,
        "epoch_s": epochs,
        "images": counts["train"],
        "val_accuracy": val_accuracy,
    }


def _per_epoch_fit(net: Any, train: Any, val: Any, epochs: int) -> list[float]:
    """kubetune/trial/cnn.py's loop before it moved to one fit(): a fit() and an evaluate() per epoch."""
    times = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.fit(train, epochs=epoch, initial_epoch=epoch - 1, shuffle=False, verbose=0)
        times.append(time.perf_counter() - t0)
        net.evaluate(val, verbose=0)
    return times


def _notebook_fit(net: Any, data_dir: Path, n: int, epochs: int) -> list[float]:
    """The notebook's cells 4, 6 and 7, on the same first n training images."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def normalize(images: Any, labels: Any) -> tuple[Any, Any]:
        images = tf.cast(images, tf.float32)
        images /= 255
        return images, labels

    train = tfds.builder("fashion_mnist", data_dir=str(data_dir)).as_dataset(
        split=f"train[:{n}]", as_supervised=True
    )
    train = train.map(normalize).repeat().shuffle(60000).batch(BATCH)
    clock = EpochClock()
    net.fit(
        train, epochs=epochs, steps_per_epoch=math.ceil(n / BATCH), verbose=0, callbacks=[clock.callback()]
    )
    return clock.times


def _no_pipeline(data_dir: Path, n: int) -> Any:
    """The first n images, normalized once, as whole batches held in memory: the model's own speed.

    Unshuffled (the same batches every epoch), so nothing is left for tf.data
    to do but hand over the next batch. (One random batch repeated was tried
    first: training on noise slowed its own epochs down by half.)
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    ds = tfds.builder("fashion_mnist", data_dir=str(data_dir)).as_dataset(
        split=f"train[:{n}]", as_supervised=True, batch_size=-1
    )
    images, labels = tfds.as_numpy(ds)
    k = n // BATCH
    x = (images[: k * BATCH].astype(np.float32) / 255.0).reshape(k, BATCH, 28, 28, 1)
    return tf.data.Dataset.from_tensor_slices((x, labels[: k * BATCH].reshape(k, BATCH)))


def _train_pipeline(data_dir: Path, n: int, variant: str) -> Any:
    """Our training pipeline with one thing changed, same seed and order otherwise."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def normalize(images: Any, labels: Any) -> tuple[Any, Any]:
        return tf.cast(images, tf.float32) / 255.0, labels

    ds = tfds.builder("fashion_mnist", data_dir=str(data_dir)).as_dataset(
        split=f"train[:{n}]", as_supervised=True, shuffle_files=False
    )
    if variant == "normalize, cache":  # float32 in the cache: normalized once, not every epoch
        ds = ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
        return ds.shuffle(n, seed=0, reshuffle_each_iteration=True).batch(BATCH).prefetch(tf.data.AUTOTUNE)
    batches = ds.cache().shuffle(n, seed=0, reshuffle_each_iteration=True).batch(BATCH)
    if variant == "no prefetch":
        return batches.map(normalize, num_parallel_calls=tf.data.AUTOTUNE)
    raise ValueError(f"unknown pipeline variant {variant!r}")


# --- the report -------------------------------------------------------------------


def best_images_per_s(runs: list[dict[str, Any]]) -> float:
    """Of the fastest steady epoch in any of the runs."""
    return max(images_per_s(r) for r in runs)


def images_per_s(run: dict[str, Any]) -> float:
    """Of the fastest steady epoch: see the module docstring."""
    steady = run["epoch_s"][1:] or run["epoch_s"]
    return float(run["images"] / min(steady))


def _section(
    headline: dict[str, list[dict[str, Any]]],
    extra: dict[str, list[dict[str, Any]]],
    models: dict[str, Any],
    epochs: int,
) -> Section:
    s = Section("throughput", "1. Trial throughput")
    rounds = max(len(r) for r in headline.values())
    s.add(
        f"{machine().line()}; tensorflow-cpu, batch 512, learning rate 0.001, 54,000 training images, "
        f"{epochs} epochs. {rounds} rounds, the variants interleaved within each round; medians, and ratios "
        "as the median of the per-round ratios. `kubetune` is the real `kubetune trial` process with an "
        "empty data dir and the dataset pushed to a local store (start-up: process start to its "
        "`training` log line: imports, dataset fetched from the store, pipelines, model); `kubetune bf16` "
        "is the same trial with `trial.precision: mixed_bfloat16` (opt-in: 16-bit compute, float32 "
        "weights). `notebook` is a process running the notebook's pipeline on the same images and model "
        "(start-up: process start to `fit()`, reading the already prepared data dir; it validates nothing "
        "per epoch, and its 106 steps of 512 see 54,272 images an epoch, counted as 54,000). Images/s is "
        "that of a run's fastest steady epoch (2 or 3): other tenants of this shared host slow whole epochs "
        "down, by up to 2x, and never speed one up; the wall times show the runs as they went."
    )
    rows = []
    for m in models:
        nb = headline[f"notebook {m}"]
        for trial_name, precision in TRIALS.items():
            ours = headline[f"{trial_name} {m}"]
            ratio = paired_ratio([images_per_s(r) for r in ours], [images_per_s(r) for r in nb])
            rows.append(
                [
                    m,
                    precision,
                    median([images_per_s(r) for r in nb]),
                    median([images_per_s(r) for r in ours]),
                    f"**{ratio:.2f}x**",
                    median([r["startup_s"] for r in nb]),
                    median([r["startup_s"] for r in ours]),
                    median([r["wall_s"] for r in nb]),
                    median([r["wall_s"] for r in ours]),
                    median([r["val_accuracy"] for r in nb]),
                    median([r["val_accuracy"] for r in ours]),
                ]
            )
    header = ["model", "kubetune precision", "notebook img/s", "kubetune img/s", "kubetune / notebook",
              "notebook start-up s", "kubetune start-up s", "notebook wall s", "kubetune wall s",
              "notebook val acc", "kubetune val acc"]  # fmt: skip
    s.add(table(header, rows))
    s.add(_verdict(headline, models))
    s.add(
        "Variants of our pipeline on 1x12, each in a fresh process, 3 epochs (the fastest of 2 and 3), "
        "interleaved; ratio against `as is` in the same round. Nothing trained changes (batch 512, same "
        "seed, same order) but in the model-alone row, which trains on the same images unshuffled."
    )
    base = [images_per_s(r) for r in extra.get("as is", next(iter(extra.values())))]
    vrows = [
        [
            name,
            median([images_per_s(r) for r in runs]),
            f"{paired_ratio([images_per_s(r) for r in runs], base):.2f}x",
            best_images_per_s(runs),
            median([r["startup_s"] for r in runs]),
            median([r["val_accuracy"] for r in runs]),
        ]
        for name, runs in extra.items()
    ]
    header = ["variant", "img/s", "vs as is", "img/s, best epoch of all rounds", "start-up s", "val acc"]
    s.add(table(header, vrows))
    if NOTEBOOK_VARIANT in extra and CEILING_VARIANT in extra:
        s.add(_ceiling(extra))
    s.add(
        "`mixed_float16` is meant for GPU tensor cores; this machine has no GPU, so `make bench` does not "
        "measure it (README, the study spec, quotes a one-off check on an H200)."
    )
    s.data = {"headline": headline, "variants": extra}
    return s


def _ceiling(extra: dict[str, list[dict[str, Any]]]) -> str:
    """How far any float32 input pipeline could go: the model alone against the notebook and us.

    A ceiling is a best case, and on this host a run's two steady epochs can
    both be slowed down: compared at the least disturbed epoch of all rounds.
    """
    alone = best_images_per_s(extra[CEILING_VARIANT])
    notebook = alone / best_images_per_s(extra[NOTEBOOK_VARIANT])
    ours = best_images_per_s(extra["as is"]) / alone
    return (
        f"At their best epochs, the model with no input pipeline at all trains at {notebook:.2f}x the "
        "notebook's images/s: the most any float32 pipeline could gain over the notebook on this CPU. Ours "
        f"runs at {ours:.2f}x the model alone (1.00x: the input pipeline costs training nothing); the rest "
        "is the model's own arithmetic, which only a lower precision (or a GPU) makes faster."
    )


def _verdict(headline: dict[str, list[dict[str, Any]]], models: dict[str, Any]) -> str:
    parts = []
    for m in models:
        nb = [images_per_s(r) for r in headline[f"notebook {m}"]]
        for trial_name, precision in TRIALS.items():
            ours = headline[f"{trial_name} {m}"]
            ratio = paired_ratio([images_per_s(r) for r in ours], nb)
            startup = median([r["startup_s"] for r in ours])
            verdict = "met" if ratio >= TARGET_RATIO and startup < TARGET_STARTUP_S else "missed"
            parts.append(
                f"{m} {precision}: {ratio:.2f}x the notebook's images/s, start-up {startup:.1f} s ({verdict})"
            )
    return (
        f"Target ≥ {TARGET_RATIO}x the notebook's images/s and start-up < {TARGET_STARTUP_S:.0f} s: "
        + "; ".join(parts)
        + "."
    )


if __name__ == "__main__":
    print(json.dumps(work(Worker(**json.loads(sys.argv[1])))))
