"""The notebook's Fashion-MNIST CNN, built from one trial's hyperparameters."""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

from kubetune.contract import MODEL_OBJECT, Params, model_object
from kubetune.errors import UsageError
from kubetune.kinds import CNN
from kubetune.store import Store

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
SGD_MOMENTUM = 0.9


def build_model(params: Params) -> keras.Model:
    """A compiled CNN; hyperparameters missing from ``params`` take the notebook's values."""
    unknown = sorted(set(params) - set(CNN.hyperparameters))
    if unknown:
        # A misspelt name would otherwise train the default silently.
        raise UsageError(
            f"params: unknown hyperparameter {unknown[0]!r}; the model takes {', '.join(CNN.hyperparameters)}"
        )
    p = {**CNN.hyperparameters, **params}
    kernel = (int(p["kernel_size"]),) * 2
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=INPUT_SHAPE),
        keras.layers.Conv2D(int(p["conv1_filters"]), kernel, padding="same", activation="relu"),
        keras.layers.MaxPooling2D((2, 2), strides=2),
        keras.layers.Conv2D(int(p["conv2_filters"]), kernel, padding="same", activation="relu"),
        keras.layers.MaxPooling2D((2, 2), strides=2),
        keras.layers.Flatten(),
    ]
    for _ in range(int(p["num_dense_layers"])):
        layers.append(keras.layers.Dense(int(p["num_dense_nodes"]), activation="relu"))
        # The notebook has no dropout (0.0): then no layer, so its model is unchanged.
        if float(p["dropout"]) > 0:
            layers.append(keras.layers.Dropout(float(p["dropout"])))
    # The softmax in float32 under a mixed precision policy too, as Keras
    # advises: 16-bit probabilities make the cross-entropy unstable.
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=optimizer(str(p["optimizer"]), float(p["learning_rate"])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=SGD_MOMENTUM)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise UsageError(f"params.optimizer: must be one of adam, sgd, rmsprop; got {name!r}")


def upload(net: keras.Model, store: Store, index: int) -> str:
    """Save ``net`` in Keras format as the trial's model object; its name.

    Overwritten, not written once: an attempt the infrastructure lost may have
    uploaded its own before dying, and the result written after this one is
    what makes a run count.
    """
    name = model_object(index)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_OBJECT  # Keras infers the format from the .keras suffix
        net.save(path)
        store.put(name, path.read_bytes())
    return name
