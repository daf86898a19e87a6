"""Section 13's CNN problem: its parameter count, a formula, against the model Keras builds."""

from __future__ import annotations

import pytest

from bench.multi_objective import param_count
from kubetune.contract import Params
from kubetune.trial.model import build_model


@pytest.mark.parametrize(
    "params",
    [
        {"num_dense_layers": 1, "num_dense_nodes": 5},
        {"num_dense_layers": 1, "num_dense_nodes": 12},
        {"num_dense_layers": 3, "num_dense_nodes": 189},
        {"num_dense_layers": 5, "num_dense_nodes": 512},
        {
            "num_dense_layers": 2,
            "num_dense_nodes": 40,
            "conv1_filters": 8,
            "conv2_filters": 16,
            "kernel_size": 5,
        },
    ],
)
def test_param_count_is_keras_count(params: Params) -> None:
    assert param_count(params) == build_model({"learning_rate": 0.001, **params}).count_params()
