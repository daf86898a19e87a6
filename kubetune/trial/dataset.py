"""Fashion-MNIST as a tfds dataset, prepared without the internet when possible.

tfds' registered checksums do not match the IDX files Debian's
``dataset-fashion-mnist`` ships (their gzip headers differ), so ``prepare``
builds the dataset with a subclass of the stock builder, under the same name
and version, that extracts local files instead of downloading. Afterwards a
plain ``tfds.load("fashion_mnist", data_dir=D, download=False)`` works.

A trial calls ``ensure``: the local copy, else the store's copy (uploaded once
with ``push``), else the local IDX files, else the internet if it answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification.mnist import FashionMNIST

from kubetune.contract import DATASET_PREFIX
from kubetune.errors import KubetuneError
from kubetune.kinds import CnnSettings
from kubetune.log import get_logger
from kubetune.store import Store

NAME = "fashion_mnist"
VERSION = str(FashionMNIST.VERSION)
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# Where tfds downloads from; probed before downloading because an offline
# tfds.load spends minutes retrying DNS before it fails.
DOWNLOAD_HOST = (urlsplit(FashionMNIST.URL).hostname or "", 80)
PROBE_TIMEOUT_S = 3.0
# tfds writes this last, so its presence means the version folder is complete.
_MARKER = "dataset_info.json"

log = get_logger("kubetune.dataset")


def data_dir() -> Path:
    """The tfds data dir: ``$KUBETUNE_DATA_DIR`` or ``~/.cache/kubetune/tensorflow_datasets``."""
    env = os.environ.get("KUBETUNE_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kubetune" / "tensorflow_datasets"


def source_dir() -> Path:
    """Where the IDX files are: ``$KUBETUNE_FASHION_MNIST_SOURCE`` or Debian's location."""
    env = os.environ.get("KUBETUNE_FASHION_MNIST_SOURCE")
    return Path(env) if env else DEFAULT_SOURCE


def _version_dir(root: Path) -> Path:
    return root / NAME / VERSION


def is_prepared(root: Path) -> bool:
    """Whether ``root`` holds a complete copy that ``tfds.load`` can read offline."""
    return (_version_dir(root) / _MARKER).is_file()


def _has_idx_files(source: Path) -> bool:
    return all((source / name).is_file() for name in IDX_FILES)


class _LocalFiles:
    """A download manager stand-in that serves the IDX files from a folder."""

    def __init__(self, dl_manager: Any, source: Path) -> None:
        self._dl = dl_manager
        self._source = source

    def download_and_extract(self, urls: dict[str, str]) -> Any:
        return self._dl.extract({key: self._source / Path(url).name for key, url in urls.items()})


class _LocalFashionMNIST(FashionMNIST, skip_registration=True):  # type: ignore[misc, call-arg]
    # Same name and version as the stock builder, so what it writes is what
    # tfds.load("fashion_mnist") reads; unregistered, so the stock one stays.
    name = NAME

    def __init__(self, *, source: Path, **kwargs: Any) -> None:
        self.source = source
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager: Any) -> Any:
        return super()._split_generators(_LocalFiles(dl_manager, self.source))


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    # Local trials may run in parallel on one data dir; one prepares, the
    # others wait and then find it prepared.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".kubetune.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(builder: Any, root: Path) -> None:
    tfds.disable_progress_bar()
    # Extracted IDX files (~55 MB) are not needed once the TFRecords exist.
    # tfds prints its progress to stdout, which belongs to results.
    with (
        tempfile.TemporaryDirectory(dir=root, prefix=".downloads-") as tmp,
        contextlib.redirect_stdout(sys.stderr),
    ):
        builder.download_and_prepare(download_dir=tmp)


def prepare(data_dir: Path, source: Path | None = None) -> Path:
    """Build the dataset from local IDX files into ``data_dir``; a no-op if already there."""
    if is_prepared(data_dir):
        return data_dir
    source = source or source_dir()
    if not _has_idx_files(source):
        raise KubetuneError(
            f"dataset: no Fashion-MNIST IDX files in {source} "
            "(install the dataset-fashion-mnist package or set KUBETUNE_FASHION_MNIST_SOURCE)"
        )
    with _locked(data_dir):
        if not is_prepared(data_dir):
            log.info("preparing dataset", source=str(source), data_dir=str(data_dir))
            _build(_LocalFashionMNIST(source=source, data_dir=str(data_dir)), data_dir)
    return data_dir


def push(store: Store, data_dir: Path) -> int:
    """Upload the prepared dataset to the store under ``dataset/``; returns the file count."""
    if not is_prepared(data_dir):
        raise KubetuneError(f"dataset: not prepared in {data_dir}; run `kubetune dataset prepare` first")
    files = sorted(p for p in _version_dir(data_dir).rglob("*") if p.is_file())
    # The marker goes last so a reader never takes a half-pushed copy for a whole one.
    files.sort(key=lambda p: p.name == _MARKER)
    for path in files:
        store.put(DATASET_PREFIX + path.relative_to(data_dir).as_posix(), path.read_bytes())
    log.info("pushed dataset", store=store.uri, files=len(files))
    return len(files)


def _pull(store: Store, data_dir: Path) -> bool:
    """Copy the store's dataset into ``data_dir``; False if the store has none."""
    prefix = DATASET_PREFIX + f"{NAME}/{VERSION}/"
    names = store.list(prefix)
    if prefix + _MARKER not in names:
        return False
    # Fill a scratch folder, then move it into place whole.
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".pull-") as tmp:
        staged = Path(tmp) / VERSION
        for name in names:
            path = staged / name.removeprefix(prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.get(name))
        _version_dir(data_dir).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, _version_dir(data_dir))
    log.info("downloaded dataset from the store", store=store.uri, files=len(names))
    return True


def reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` seconds, DNS included."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    # Name resolution ignores socket timeouts; a daemon thread bounds it too.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer) and answer[0]


def ensure(
    data_dir: Path, store: Store | None = None, *, download_host: tuple[str, int] = DOWNLOAD_HOST
) -> Path:
    """Make the dataset available in ``data_dir`` by the cheapest way that works, or fail fast."""
    if is_prepared(data_dir):
        return data_dir
    with _locked(data_dir):
        if is_prepared(data_dir) or (store is not None and _pull(store, data_dir)):
            return data_dir
    source = source_dir()
    if _has_idx_files(source):
        return prepare(data_dir, source)
    host, port = download_host
    if not reachable(host, port):
        where = f"the store {store.uri} has no {DATASET_PREFIX}, " if store is not None else ""
        raise KubetuneError(
            f"dataset: Fashion-MNIST is not in {data_dir}, {where}no IDX files are in {source} "
            f"and {host} is unreachable; install the dataset-fashion-mnist package "
            "(or set KUBETUNE_FASHION_MNIST_SOURCE) or upload it once with `kubetune dataset push STORE`"
        )
    with _locked(data_dir):
        if not is_prepared(data_dir):
            log.info("downloading dataset", host=host, data_dir=str(data_dir))
            _build(tfds.builder(NAME, data_dir=str(data_dir)), data_dir)
    return data_dir


def _normalize(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32) / 255.0, labels


def _batches(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    # Normalizing whole batches is cheaper than the notebook's per-image map.
    batches = ds.batch(batch_size).map(_normalize, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def load_splits(
    settings: CnnSettings, data_dir: Path
) -> tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset, dict[str, int]]:
    """Train, validation and test pipelines of (image, label) batches, and their sizes.

    Validation is the last ``validation_split`` of the 60k training images,
    train the rest (its first ``train_subset`` if set), test the test split
    (its first ``test_subset`` if set). Only train is shuffled.
    """
    builder = tfds.builder(NAME, data_dir=str(data_dir))
    total = builder.info.splits["train"].num_examples
    n_val = round(total * settings.validation_split)
    if not 0 < n_val < total:
        raise KubetuneError(
            f"trial.validation_split: {settings.validation_split} holds out {n_val} of {total} images"
        )
    first_val = total - n_val
    n_train = min(settings.train_subset or first_val, first_val)
    n_test = min(settings.test_subset or total, builder.info.splits["test"].num_examples)
    splits = [f"train[:{n_train}]", f"train[{first_val}:]", f"test[:{n_test}]"]
    train, val, test = builder.as_dataset(split=splits, as_supervised=True, shuffle_files=False)
    counts = {"train": n_train, "validation": n_val, "test": n_test}
    # cache() keeps the decoded uint8 images in memory after the first pass; a
    # full-size buffer reshuffled every epoch matches the notebook's shuffle.
    train = train.cache().shuffle(n_train, seed=settings.seed, reshuffle_each_iteration=True)
    bs = settings.batch_size
    return _batches(train, bs), _batches(val.cache(), bs), _batches(test.cache(), bs), counts
