"""The built-in kind: the notebook's Keras CNN on Fashion-MNIST.

Every default is the notebook's. The trial side that trains it is
``kubetune.trial.cnn``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kubetune.kinds._base import TrialKind
from kubetune.settings import setting

# Keras dtype policies a trial may train under. float32 is the default and the
# notebook's arithmetic; the mixed ones compute in 16 bits and keep float32
# weights: mixed_float16 pays off on GPU tensor cores, mixed_bfloat16 on CPUs
# with AVX512_BF16 / AMX and on recent GPUs (BENCHMARKS.md, section 1).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# Optimizers a trial may train with: Adam (the notebook's), SGD with momentum, RMSprop.
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SEED_MAX = 2**32 - 1  # numpy's seeds, which Keras' set_random_seed sets


@dataclass(frozen=True)
class CnnSettings:
    """How each trial trains; the same for every trial of a study."""

    epochs: int = setting(3, minimum=1, help="training epochs per trial")
    batch_size: int = setting(512, minimum=1, help="training batch size")
    train_subset: int | None = setting(None, minimum=1, help="null: every training image not held out")
    validation_split: float = setting(0.1, between=(0.0, 1.0), help="fraction of training images held out")
    test_subset: int | None = setting(None, minimum=1, help="null: the whole test split")
    seed: int = setting(0, minimum=0, maximum=SEED_MAX, help="seeds weights and shuffling")
    precision: str = setting("float32", choices=PRECISIONS, help="Keras dtype policy the trials train under")


CNN = TrialKind(
    name="cnn",
    settings_type=CnnSettings,
    trainer="kubetune.trial.cnn:train",
    # The CNN's hyperparameters and the value a trial uses for any not searched:
    # the notebook's. epochs and batch_size, when not searched, are the settings'.
    hyperparameters={
        "learning_rate": 0.001,
        "num_dense_layers": 1,
        "num_dense_nodes": 12,
        "batch_size": 512,
        "epochs": 3,
        "dropout": 0.0,
        "conv1_filters": 32,
        "conv2_filters": 64,
        "kernel_size": 3,
        "optimizer": "adam",
    },
    metrics={
        "val_accuracy": "maximize",
        "val_loss": "minimize",
        "test_accuracy": "maximize",
        "test_loss": "minimize",
        "accuracy": "maximize",
        "loss": "minimize",
        "images_per_s": "maximize",
        "param_count": "minimize",
    },
    # Accuracies are fractions; anything else in a record is a malformed result.
    bounds={m: (0.0, 1.0) for m in ("val_accuracy", "test_accuracy", "accuracy")},
    # Keras' fit() reports these after each epoch; the test split only at the end.
    epoch_metrics=frozenset({"loss", "accuracy", "val_loss", "val_accuracy"}),
    choices={"optimizer": OPTIMIZERS},
    ranges={
        "learning_rate": (0.0, math.inf),
        "num_dense_layers": (0, 64),
        "num_dense_nodes": (1, 65536),
        "batch_size": (1, 65536),
        "epochs": (1, 10000),
        "dropout": (0.0, 0.99),
        "conv1_filters": (1, 4096),
        "conv2_filters": (1, 4096),
        "kernel_size": (1, 7),
    },
    # The leaderboard fits a laptop screen: training metrics and throughput are in history.csv.
    columns=("val_loss", "val_accuracy", "test_loss", "test_accuracy"),
    held_out=("test_accuracy", "test_loss"),
    seed="seed",
    epochs="epochs",
    saves_model=True,
    # The notebook's search: its space and its first point.
    default_space=(
        {"name": "learning_rate", "type": "real", "low": 1e-5, "high": 1e-1, "prior": "log-uniform"},
        {"name": "num_dense_layers", "type": "integer", "low": 1, "high": 5},
        {"name": "num_dense_nodes", "type": "integer", "low": 5, "high": 512},
    ),
    default_x0=({"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12},),
)
