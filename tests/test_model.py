"""The notebook's CNN: its layers and its parameter count, worked out by hand."""

from __future__ import annotations

import keras
import pytest

from kubetune.errors import UsageError
from kubetune.trial.model import build_model

# Conv2D(32, 3x3) on 1 channel: 3*3*1*32 + 32; Conv2D(64, 3x3) on 32: 3*3*32*64 + 64.
CONV_PARAMS = 320 + 18_496
FLAT = 7 * 7 * 64  # 28 -> 14 -> 7 after the two 2x2 poolings


def expected_params(layers: int, nodes: int) -> int:
    first = FLAT * nodes + nodes
    rest = (layers - 1) * (nodes * nodes + nodes)
    return CONV_PARAMS + first + rest + nodes * 10 + 10


@pytest.mark.parametrize(("layers", "nodes", "count"), [(1, 12, 56_590), (3, 64, 228_554)])
def test_param_count_matches_the_formula(layers: int, nodes: int, count: int) -> None:
    model = build_model({"learning_rate": 0.01, "num_dense_layers": layers, "num_dense_nodes": nodes})
    assert expected_params(layers, nodes) == count
    assert model.count_params() == count


def test_layers_are_the_notebooks() -> None:
    model = build_model({"learning_rate": 0.01, "num_dense_layers": 3, "num_dense_nodes": 64})
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten"] + ["Dense"] * 4
    conv1, pool1, conv2 = model.layers[:3]
    assert (conv1.filters, conv1.kernel_size, conv1.padding) == (32, (3, 3), "same")
    assert (conv2.filters, conv2.kernel_size, conv2.padding) == (64, (3, 3), "same")
    assert (pool1.pool_size, pool1.strides) == ((2, 2), (2, 2))
    assert [layer.units for layer in model.layers[5:]] == [64, 64, 64, 10]
    activations = [layer.activation.__name__ for layer in model.layers if hasattr(layer, "activation")]
    assert activations == ["relu"] * 5 + ["softmax"]
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.loss == "sparse_categorical_crossentropy"


def test_missing_params_take_the_notebook_defaults() -> None:
    model = build_model({})
    assert model.count_params() == expected_params(1, 12)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_an_unknown_param_is_refused() -> None:
    with pytest.raises(UsageError, match="num_dense_node"):
        build_model({"num_dense_node": 64})


def test_the_searchable_knobs_shape_the_model() -> None:
    knobs = {"conv1_filters": 8, "conv2_filters": 16, "kernel_size": 5, "dropout": 0.25}
    model = build_model({**knobs, "num_dense_layers": 2, "num_dense_nodes": 20, "optimizer": "sgd",
                         "learning_rate": 0.05})  # fmt: skip
    conv1, _, conv2 = model.layers[:3]
    assert (conv1.filters, conv1.kernel_size, conv2.filters, conv2.kernel_size) == (8, (5, 5), 16, (5, 5))
    kinds = [type(layer).__name__ for layer in model.layers[5:]]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert model.layers[6].rate == 0.25
    # 5x5 kernels: 5*5*1*8 + 8, then 5*5*8*16 + 16; 7*7*16 flattened.
    assert model.count_params() == 208 + 3216 + (784 * 20 + 20) + (20 * 20 + 20) + (20 * 10 + 10)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.momentum) == pytest.approx(0.9)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert isinstance(build_model({"optimizer": "rmsprop"}).optimizer, keras.optimizers.RMSprop)


def test_an_unknown_optimizer_is_refused() -> None:
    with pytest.raises(
        UsageError, match=r"params\.optimizer: must be one of adam, sgd, rmsprop; got 'lbfgs'"
    ):
        build_model({"optimizer": "lbfgs"})
