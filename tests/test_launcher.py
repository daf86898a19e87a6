"""The launcher contract against the local launcher (the fake trial as a real subprocess)
and the in-process one the loop's tests use.

The Kubernetes launcher's run is tests/cluster/test_kubernetes_launcher.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune.launcher import Launcher, LocalLauncher
from kubetune.store import open_store
from kubetune.testing.launcher import LauncherContract, MakeLauncher
from tests.fake_trial import ENV as FAKE_ENV
from tests.fake_trial import shim_dir
from tests.synthetic import InProcessLauncher


class TestLocalLauncher(LauncherContract):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")

    @pytest.fixture
    def launcher(self, tmp_path: Path) -> MakeLauncher:
        shim = shim_dir(tmp_path / "shim") / "kubetune"

        def make(fake: dict[str, Any]) -> Launcher:
            return LocalLauncher(tmp_path / "logs", env={FAKE_ENV: json.dumps(fake)}, executable=str(shim))

        return make


class TestInProcessLauncher(LauncherContract):
    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")

    @pytest.fixture
    def launcher(self, store_uri: str) -> MakeLauncher:
        def make(fake: dict[str, Any]) -> Launcher:
            def having(key: str) -> frozenset[int]:
                return frozenset(int(i) for i, how in fake.items() if key in how)

            return InProcessLauncher(open_store(store_uri), fail=having("exit"), hang=having("hang"))

        return make
