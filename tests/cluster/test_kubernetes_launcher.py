"""The launcher contract against the Kubernetes launcher: trial Jobs on the test cluster's node."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.kubernetes import JobSettings, KubernetesLauncher
from kubetune.launcher import Launcher
from kubetune.testing.launcher import LauncherContract, MakeLauncher
from tests.cluster.controlplane import ControlPlane
from tests.gcs_emulator import FakeGCS
from tests.reliability.rig import GPU_TOLERATION, fake_trial_env

pytestmark = pytest.mark.cluster


class TestKubernetesLauncher(LauncherContract):
    @pytest.fixture
    def store_uri(self, bucket: str) -> str:
        return f"gs://{bucket}/contract"

    @pytest.fixture
    def launcher(
        self, control_plane: ControlPlane, fake_image: str, namespace: str, gcs: FakeGCS
    ) -> MakeLauncher:

        def make(fake: dict[str, Any]) -> Launcher:
            settings = JobSettings(
                image=fake_image,
                gpus=0,  # the contract is not about GPUs: trials need not queue for the node's one
                tolerations=[GPU_TOLERATION],
                env=fake_trial_env(fake, gcs.host),
                pendingTimeoutSeconds=120,
            )
            return KubernetesLauncher(control_plane.api_client, namespace, settings)

        return make
