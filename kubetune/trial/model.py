"""The notebook's Fashion-MNIST CNN, built from one trial's hyperparameters."""

from __future__ import annotations

import keras

from kubetune.contract import Params
from kubetune.errors import UsageError
from kubetune.kinds import CNN

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def build_model(params: Params) -> keras.Model:
    """A compiled CNN; hyperparameters missing from ``params`` take their defaults."""
    unknown = sorted(set(params) - set(CNN.hyperparameters))
    if unknown:
        # A misspelt name would otherwise train the default silently.
        raise UsageError(
            f"params: unknown hyperparameter {unknown[0]!r}; the model takes {', '.join(CNN.hyperparameters)}"
        )
    p = {**CNN.hyperparameters, **params}
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=INPUT_SHAPE),
        keras.layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        keras.layers.MaxPooling2D((2, 2), strides=2),
        keras.layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
        keras.layers.MaxPooling2D((2, 2), strides=2),
        keras.layers.Flatten(),
    ]
    layers += [
        keras.layers.Dense(int(p["num_dense_nodes"]), activation="relu")
        for _ in range(int(p["num_dense_layers"]))
    ]
    # The softmax in float32 under a mixed precision policy too, as Keras
    # advises: 16-bit probabilities make the cross-entropy unstable.
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=float(p["learning_rate"])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
