"""12. Trials per GPU: how many CNN trials one GPU serves before each slows down.

GKE's GPU time-sharing and MPS (chart values ``gpu.sharing``) put several
trial pods on one physical GPU. Whether that pays is the model's: a small
CNN leaves most of a GPU idle, so k trials at once may each run nearly as
fast as one alone, k times the study's throughput on the same GPU. This
measures it where it matters, on a GPU: k = 1, 2, 4 real ``kubetune trial``
processes started together on the one visible GPU (each with TensorFlow's
memory growth on, as several tenants of a GPU need), the variants
interleaved; per trial its steady epoch time, and the GPU's throughput
(images a second, all trials together) against one trial alone.

Without a GPU (this project's CI machine has none) the full run says so and
measures nothing: CPU numbers would answer another question. The smoke run
exercises the same code on the CPU with tiny data.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from typing import Any

from bench.common import Context, Section, interleave, median, table
from bench.throughput import MODELS, kubetune_trial, prepared_data_dir, store_with_dataset

SHARES = (1, 2, 4)
ROUNDS = 3
EPOCHS = 3


def gpu_name() -> str | None:
    """The first GPU nvidia-smi lists (it reads the local driver only); None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False, timeout=30)
    lines = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
    return lines[0] if lines else None


def run(ctx: Context) -> Section:
    s = Section("gpu_sharing", "12. Trials per GPU (time-sharing)")
    gpu = gpu_name()
    if gpu is None and not ctx.smoke:
        s.add(
            "Not measured: this machine has no GPU. On a machine with one NVIDIA GPU and the CUDA build "
            "of TensorFlow (the trial image's), `.venv/bin/python -m bench gpu_sharing` runs 1, 2 and 4 "
            "trials of the notebook's CNN at once on it and fills this section."
        )
        return s
    data_dir = prepared_data_dir(ctx)
    store = store_with_dataset(ctx, data_dir)
    subset, split, epochs = (512, 0.01, 1) if ctx.smoke else (None, 0.1, EPOCHS)
    shares = SHARES[:2] if ctx.smoke else SHARES
    indices = count(100_000)  # trial indices of its own: the store with the dataset is shared with throughput

    def together(variant: str) -> list[dict[str, Any]]:
        k = int(variant)

        def trial(index: int) -> dict[str, Any]:
            return kubetune_trial(store, index, MODELS["1x296"], epochs, subset, ctx.work, split, "float32",
                                  {"TF_FORCE_GPU_ALLOW_GROWTH": "true"})  # fmt: skip

        with ThreadPoolExecutor(k) as pool:
            return list(pool.map(trial, [next(indices) for _ in range(k)]))

    runs = interleave([str(k) for k in shares], 1 if ctx.smoke else ROUNDS, together)
    return _section(s, gpu or "no GPU (smoke run, on the CPU)", runs, epochs)


def _section(s: Section, gpu: str, runs: dict[str, list[list[dict[str, Any]]]], epochs: int) -> Section:
    s.add(
        f"{gpu}. The notebook's CNN (1 dense layer of 296 nodes, batch 512, {epochs} epochs on 54,000 "
        "images) as `kubetune trial` processes started together, k at once on the one GPU; rounds "
        "interleaved (1, 2, 4, 1, 2, 4, ...). Per trial: the fastest steady epoch (epoch 1 traces the "
        "graph); the GPU's throughput: the images all k trials trained per second of that epoch, "
        "against one trial alone."
    )
    alone = median([_epoch_s(t) for rnd in runs["1"] for t in rnd])
    rows = []
    for variant, rounds in runs.items():
        k = int(variant)
        epoch = median([_epoch_s(t) for rnd in rounds for t in rnd])
        rows.append([k, epoch, f"{epoch / alone:.2f}x", f"{k * alone / epoch:.2f}x"])
    s.add(table(["trials at once", "epoch s (median)", "each trial's slowdown", "GPU throughput"], rows))
    s.data = {"gpu": gpu, "runs": runs}
    return s


def _epoch_s(trial: dict[str, Any]) -> float:
    steady = trial["epoch_s"][1:] or trial["epoch_s"]
    return float(min(steady))
