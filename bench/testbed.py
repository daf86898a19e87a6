"""Where the cluster benchmarks' studies run: a test cluster's API, node, trial image and emulator.

Its own module, below both bench.common (whose Context carries one) and
bench.cluster (which starts one), so neither imports the other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from kubernetes import client

from kubetune.kubernetes import KubernetesLauncher
from kubetune.kubernetes.job import JobSettings
from kubetune.store import Store, open_store
from tests.cluster.controlplane import ControlPlane
from tests.fake_trial import ENV as FAKE_ENV

BUCKET = "kubetune-bench"


@dataclass
class BenchCluster:
    """Where bench studies run: the API, the node their Jobs are pinned to, the trial
    image, and the emulator (``gcs_host``) whose bucket holds their stores."""

    kubeconfig: Path
    node: str
    image: str
    gcs_host: str
    gpus: int = 1
    control_plane: ControlPlane | None = None  # for what runs beside the cluster (Kueue)
    settings: JobSettings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = JobSettings(
            image=self.image,
            gpus=self.gpus,
            nodeSelector={"kubernetes.io/hostname": self.node},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            ttlSecondsAfterFinished=None,
            activeDeadlineSeconds=600,
            pendingTimeoutSeconds=300,
        )

    def api(self) -> client.ApiClient:
        cfg = client.Configuration()
        from kubernetes import config

        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 8
        return client.ApiClient(cfg)

    def namespace(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(self.api()).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
        return name

    def store(self, name: str) -> Store:
        """A fresh store in the emulator's bucket: trial containers write there."""
        return open_store(f"gs://{BUCKET}/{name}-{uuid.uuid4().hex[:8]}")

    def launcher(self, namespace: str, fake: str, queue: str | None = None) -> KubernetesLauncher:
        """A launcher whose trials behave as ``fake`` (KUBETUNE_FAKE_TRIAL JSON) says, launched
        into the Kueue LocalQueue ``queue`` if given."""
        env = [{"name": "STORAGE_EMULATOR_HOST", "value": self.gcs_host}, {"name": FAKE_ENV, "value": fake}]
        settings = replace(self.settings, env=env, kueueQueueName=queue)
        return KubernetesLauncher(self.api(), namespace, settings)
