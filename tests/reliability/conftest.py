"""Fixtures of the reliability suite: a namespace per module, a rig per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import create_namespace, delete_namespace
from tests.cluster.images import ProjectImages
from tests.cluster.node import Node
from tests.gcs_emulator import FakeGCS
from tests.reliability.rig import Rig, Testbed


@pytest.fixture(scope="module")
def module_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """One restricted namespace for a module whose tests share a study run or a clean slate."""
    core = client.CoreV1Api(control_plane.api_client)
    name = create_namespace(core, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    yield name
    delete_namespace(core, name)


@pytest.fixture(scope="session")
def testbed(
    cluster_assets: Path,
    control_plane: ControlPlane,
    node: Node,
    project_images: ProjectImages,
    fake_image: str,
    gcs: FakeGCS,
) -> Testbed:
    """The cluster, its node with the fake trial image loaded, and the GCS emulator."""
    return Testbed(cluster_assets, control_plane, node, gcs, project_images.controller, fake_image)


@pytest.fixture
def rig(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[Rig]:
    """A fresh namespace on the testbed, ready for ``rig.install`` of a study with fake trials."""
    rig = Rig(testbed, namespace, tmp_path)
    yield rig
    rig.close()
