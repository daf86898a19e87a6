"""Fixtures shared by the whole suite: real services on loopback, never mocks."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune.testing.launcher import MakeRequest

# The real control plane's fixtures, registered once here so every folder
# shares one control plane per session.
from tests.cluster.fixtures import (
    Kubectl,
    cluster_assets,
    control_plane,
    fake_image,
    kubectl,
    kueue,
    namespace,
    node,
    node_network,
    project_images,
    queue,
)
from tests.cluster.nodenet import NodeNetwork
from tests.fake_trial import cnn_request, shim_dir
from tests.gcs_emulator import FakeGCS

__all__ = [
    "Kubectl",
    "cluster_assets",
    "control_plane",
    "fake_image",
    "kubectl",
    "kueue",
    "namespace",
    "node",
    "node_network",
    "project_images",
    "queue",
]

_bucket_names = (f"kubetune-test-{i}" for i in itertools.count())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped by SIGTERM (`timeout`, CI's cancel) tears its fixtures down as Ctrl-C does:
    # the node's mounts, bridge and rules go. SIGKILL cannot be caught: the next session's
    # NodeNetwork.start() removes a dead session's network (tests/cluster/nodenet.py).
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test` runs two workers (--dist loadgroup): every test of the cluster goes to one of them,
    # which starts the one control plane and node, while the other runs the local tests beside it.
    for item in items:
        # fixturenames is the closure: the node and every cluster fixture need the control plane,
        # a session fixture each pytest-xdist worker that asks for it would start again.
        if item.get_closest_marker("cluster") or "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture(scope="session")
def gcs(
    cluster_assets: Path, node_network: NodeNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeGCS]:
    """fake-gcs-server on the node network's gateway (tests and pods reach it there),
    with STORAGE_EMULATOR_HOST pointing at it."""
    binary = cluster_assets / "fake-gcs-server"
    with FakeGCS(binary, tmp_path_factory.mktemp("gcs"), address=node_network.gateway) as server:
        old = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = server.host
        yield server
        if old is None:
            del os.environ["STORAGE_EMULATOR_HOST"]
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture
def bucket(gcs: FakeGCS) -> str:
    """A fresh, empty bucket; returns its name."""
    name = next(_bucket_names)
    gcs.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def prepared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tfds data dir holding Fashion-MNIST, prepared once per session (~10 s).

    Built offline from the dataset-fashion-mnist package's IDX files (their
    absence is an error, not a skip). Subprocesses get it as KUBETUNE_DATA_DIR
    in their env; os.environ is left alone.
    """
    from kubetune.trial import dataset  # imports TensorFlow: only for tests that ask

    return dataset.prepare(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture
def trial_request() -> MakeRequest:
    """The trials the launcher contract suite launches: the CNN's, run by tests/fake_trial.py."""
    return cnn_request


@pytest.fixture
def prior_fits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The priors each model the GP search fits from now on is fitted with; the fits are real."""
    from kubetune.controller.search import gp  # imports scikit-learn: only for tests that ask

    priors: list[tuple[str, ...]] = []
    fit = gp.model

    def recorded(spec: Any, xs: Any, ys: Any, fits: Any = ("none",)) -> Any:
        priors.append(tuple(fits))
        return fit(spec, xs, ys, fits)

    monkeypatch.setattr(gp, "model", recorded)
    return priors


@pytest.fixture(scope="session")
def shim() -> Iterator[Path]:
    """A PATH folder whose ``kubetune trial`` is tests/fake_trial.py; ``shim / "kubetune"`` runs it
    (local studies; on the cluster, the fake trial image does the same)."""
    parent = Path.home() / ".cache" / "kubetune"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="reliability-shim-", dir=parent))
    yield shim_dir(folder)
    shutil.rmtree(folder, ignore_errors=True)
