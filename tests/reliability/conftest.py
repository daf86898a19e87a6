"""Fixtures of the reliability suite: the fake-trial shim, a namespace per module, a rig per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import create_namespace, delete_namespace
from tests.cluster.images import ProjectImages, fake_trial_image
from tests.cluster.node import Node
from tests.fake_trial import shim_dir
from tests.gcs_emulator import FakeGCS
from tests.reliability._cluster import Rig, Testbed


@pytest.fixture(scope="session")
def shim() -> Iterator[Path]:
    """A PATH folder whose ``kubetune trial`` is tests/fake_trial.py; ``shim / "kubetune"`` runs it
    (local studies; on the cluster, the fake trial image does the same)."""
    parent = Path.home() / ".cache" / "kubetune"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="reliability-shim-", dir=parent))
    yield shim_dir(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def module_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """One restricted namespace for a module whose tests share a study run or a clean slate."""
    core = client.CoreV1Api(control_plane.api_client)
    name = create_namespace(core, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    yield name
    delete_namespace(core, name)


@pytest.fixture(scope="session")
def testbed(
    cluster_assets: Path, control_plane: ControlPlane, node: Node, project_images: ProjectImages, gcs: FakeGCS
) -> Testbed:
    """The cluster, its node with the fake trial image loaded, and the GCS emulator."""
    fake = fake_trial_image(project_images.controller)
    node.load_images([fake])
    return Testbed(cluster_assets, control_plane, node, gcs, project_images.controller, fake)


@pytest.fixture
def rig(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[Rig]:
    """A fresh namespace on the testbed, ready for ``rig.install`` of a study with fake trials."""
    rig = Rig(testbed, namespace, tmp_path)
    yield rig
    rig.close()
