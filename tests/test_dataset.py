"""Fashion-MNIST offline: prepare, split, fail fast without a source, share through the store."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kubetune.contract import DATASET_PREFIX
from kubetune.errors import KubetuneError
from kubetune.kinds import CnnSettings
from kubetune.store import open_store
from kubetune.trial import dataset


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: the download host of a machine without internet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_idx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETUNE_FASHION_MNIST_SOURCE", str(tmp_path / "no-idx-files"))


def _hashes(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for images, _ in batches for image in images]


def test_prepared_dir_loads_in_a_fresh_process_with_plain_tfds(prepared_data_dir: Path) -> None:
    script = (
        "import sys, tensorflow_datasets as tfds\n"
        "ds, info = tfds.load('fashion_mnist', data_dir=sys.argv[1], download=False, with_info=True)\n"
        "example = next(iter(ds['test']))\n"
        "print(info.splits['train'].num_examples, info.splits['test'].num_examples, example['image'].shape)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(prepared_data_dir)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["60000", "10000", "(28,", "28,", "1)"]


def test_prepare_again_returns_at_once(prepared_data_dir: Path) -> None:
    start = time.perf_counter()
    assert dataset.prepare(prepared_data_dir) == prepared_data_dir
    assert time.perf_counter() - start < 0.1


def test_split_sizes_follow_the_settings(prepared_data_dir: Path) -> None:
    counts = [
        dataset.load_splits(settings, prepared_data_dir)[3]
        for settings in (CnnSettings(), CnnSettings(validation_split=0.25, train_subset=100_000))
    ]
    assert counts == [
        {"train": 54_000, "validation": 6_000, "test": 10_000},
        {"train": 45_000, "validation": 15_000, "test": 10_000},
    ]


def test_splits_are_disjoint_normalized_and_deterministic(prepared_data_dir: Path) -> None:
    settings = CnnSettings(batch_size=512, train_subset=2048, test_subset=1000, validation_split=0.1)
    train, val, test, counts = dataset.load_splits(settings, prepared_data_dir)
    assert counts == {"train": 2048, "validation": 6000, "test": 1000}

    images, labels = next(iter(train))
    assert images.shape == (512, 28, 28, 1) and images.dtype.name == "float32"
    assert float(np.min(images)) >= 0.0 and float(np.max(images)) <= 1.0
    assert labels.dtype.is_integer

    train_hashes = _hashes(train.as_numpy_iterator())
    val_hashes = _hashes(val.as_numpy_iterator())
    assert (len(train_hashes), len(val_hashes), len(_hashes(test.as_numpy_iterator()))) == (2048, 6000, 1000)
    assert not set(train_hashes) & set(val_hashes)
    # Train is reshuffled every epoch; validation is the same every time.
    assert _hashes(train.as_numpy_iterator()) != train_hashes
    assert sorted(_hashes(train.as_numpy_iterator())) == sorted(train_hashes)
    assert _hashes(dataset.load_splits(settings, prepared_data_dir)[1].as_numpy_iterator()) == val_hashes


def test_offline_without_a_source_fails_fast_with_one_line(
    tmp_path: Path, closed_port: int, no_idx_files: None
) -> None:
    store = open_store(str(tmp_path / "store"))
    start = time.monotonic()
    with pytest.raises(KubetuneError) as err:
        dataset.ensure(tmp_path / "tfds", store, download_host=("127.0.0.1", closed_port))
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message
    assert "dataset-fashion-mnist" in message and "kubetune dataset push" in message


def test_reachable_answers_for_loopback(closed_port: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert dataset.reachable("127.0.0.1", server.getsockname()[1])
    assert not dataset.reachable("127.0.0.1", closed_port)


def test_push_then_ensure_downloads_from_the_store(
    prepared_data_dir: Path, tmp_path: Path, closed_port: int, no_idx_files: None
) -> None:
    store = open_store(str(tmp_path / "store"))
    count = dataset.push(store, prepared_data_dir)
    names = store.list(DATASET_PREFIX)
    assert count == len(names) > 0
    assert f"{DATASET_PREFIX}fashion_mnist/{dataset.VERSION}/dataset_info.json" in names

    fresh = tmp_path / "fresh"
    assert dataset.ensure(fresh, store, download_host=("127.0.0.1", closed_port)) == fresh
    assert dataset.is_prepared(fresh)
    settings = CnnSettings(train_subset=512, test_subset=512)
    test = dataset.load_splits(settings, fresh)[2]
    assert len(_hashes(test.as_numpy_iterator())) == 512


def test_push_refuses_an_unprepared_dir(tmp_path: Path) -> None:
    with pytest.raises(KubetuneError, match="not prepared"):
        dataset.push(open_store(str(tmp_path / "store")), tmp_path / "empty")
