"""`kubetune trial` end to end: real TensorFlow, real dataset, a local store, small subsets."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune import contract, trial
from kubetune.contract import TrialRequest, TrialResult
from kubetune.kinds import CnnSettings
from kubetune.store import AlreadyExists, Store, open_store
from kubetune.trial import runner

KUBETUNE = Path(sys.executable).parent / "kubetune"
NOTEBOOK_X0: contract.Params = {"learning_rate": 0.001, "num_dense_layers": 1, "num_dense_nodes": 12}
SMALL = CnnSettings(epochs=1, train_subset=2048, test_subset=1024)


def request(store: Path, index: int, params: contract.Params) -> TrialRequest:
    return TrialRequest(
        store=str(store), study="t", index=index, params=params, settings=SMALL, objective="val_accuracy"
    )


def run_trial(req: TrialRequest, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The exact command line the controller runs, with the session's prepared dataset."""
    argv = contract.trial_command(req)
    env = {
        **os.environ,
        "KUBETUNE_DATA_DIR": str(data_dir),
        "KUBETUNE_FASHION_MNIST_SOURCE": str(data_dir / "no-idx-files"),
        "KUBETUNE_LOG_FORMAT": "json",
    }
    return subprocess.run([str(KUBETUNE), *argv[1:]], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_trial_records_its_result_once(prepared_data_dir: Path, tmp_path: Path) -> None:
    req = request(tmp_path / "store", 0, NOTEBOOK_X0)
    out = run_trial(req, prepared_data_dir)
    assert out.returncode == contract.EXIT_OK, out.stderr
    assert out.stdout == ""  # logs go to stderr; the result goes to the store

    path = tmp_path / "store" / contract.result_object(0)
    data = path.read_bytes()
    result = TrialResult.from_json(data)
    assert result.succeeded and result.params == NOTEBOOK_X0
    assert 0 < result.metrics["val_accuracy"] <= 1
    assert result.objective_value == result.metrics["val_accuracy"]
    assert list(result.metrics) == [  # in the order the trial reports them, the views' order
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
        "images_per_s",
        "param_count",
    ]
    assert result.metrics["images_per_s"] > 0 and result.metrics["param_count"] == 56_590
    assert len(result.epoch_times_s) == 1 and result.seed == 0
    assert result.epoch_metrics == [
        {m: result.metrics[m] for m in ("loss", "accuracy", "val_loss", "val_accuracy")}
    ]
    assert set(result.versions) == {
        "python",
        "tensorflow",
        "keras",
        "tensorflow_datasets",
        "numpy",
        "kubetune",
    }
    assert result.started_at is not None and result.finished_at is not None
    assert result.wall_time_s == pytest.approx(result.finished_at - result.started_at)

    again = run_trial(req, prepared_data_dir)
    assert again.returncode == contract.EXIT_ALREADY_RECORDED, again.stderr
    assert '"training"' not in again.stderr
    assert path.read_bytes() == data


@pytest.mark.slow
def test_nan_loss_records_a_failure(prepared_data_dir: Path, tmp_path: Path) -> None:
    # Adam steps of ~1e8 overflow the activations within the first batches.
    out = run_trial(request(tmp_path / "store", 1, {**NOTEBOOK_X0, "learning_rate": 1e8}), prepared_data_dir)
    assert out.returncode == contract.EXIT_TRIAL_FAILED, out.stderr
    result = TrialResult.from_json((tmp_path / "store" / contract.result_object(1)).read_bytes())
    assert result.status == "failed" and result.objective_value is None
    assert result.reason == "loss became NaN at epoch 1"


@pytest.mark.slow
def test_precision_changes_the_arithmetic_not_the_model(prepared_data_dir: Path, tmp_path: Path) -> None:
    results = {}
    for index, precision in enumerate(("float32", "mixed_bfloat16")):
        req = request(tmp_path / "store", index, NOTEBOOK_X0)
        req = dataclasses.replace(req, settings=dataclasses.replace(SMALL, precision=precision))
        out = run_trial(req, prepared_data_dir)
        assert out.returncode == contract.EXIT_OK, out.stderr
        assert f'"precision": "{precision}"' in out.stderr
        record = tmp_path / "store" / contract.result_object(index)
        results[precision] = TrialResult.from_json(record.read_bytes())
    f32, bf16 = results["float32"], results["mixed_bfloat16"]
    assert bf16.metrics["param_count"] == f32.metrics["param_count"]  # the same CNN, float32 weights
    assert bf16.metrics["loss"] != f32.metrics["loss"]  # 16-bit compute rounds differently
    assert abs(bf16.metrics["val_accuracy"] - f32.metrics["val_accuracy"]) < 0.05


class _LosingStore:
    """A store where another run writes the result while this one trains."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.get = inner.get
        self.list = inner.list
        self.put = inner.put

    def create(self, name: str, data: bytes) -> None:
        self.inner.create(name, b"the other run's record")
        self.inner.create(name, data)


@pytest.mark.slow
def test_losing_a_write_race_keeps_the_winner(
    prepared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "store"))
    monkeypatch.setattr(runner, "open_store", lambda uri: _LosingStore(store))
    monkeypatch.setenv("KUBETUNE_DATA_DIR", str(prepared_data_dir))
    argv = contract.trial_command(request(tmp_path / "store", 2, NOTEBOOK_X0))[2:]
    assert trial.main(argv) == contract.EXIT_ALREADY_RECORDED
    assert store.get(contract.result_object(2)) == b"the other run's record"
    with pytest.raises(AlreadyExists):
        store.create(contract.result_object(2), b"")


def test_trial_side_imports_neither_kubernetes_nor_skopt() -> None:
    script = (
        "import sys, kubetune.trial\n"
        "assert 'tensorflow' not in sys.modules, 'kubetune.trial imports TensorFlow eagerly'\n"
        "import kubetune.trial.dataset, kubetune.trial.model\n"
        "heavy = sorted({'kubernetes', 'skopt'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
