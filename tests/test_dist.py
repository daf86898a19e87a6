"""The package a user puts into their own training image: `make dist`'s wheel, at the oldest versions
its ranges allow (`make oldest`, a venv of its own), runs a program's trial against both stores.

A program's image needs kubetune's base install alone (the `kubetune trial exec`
wrapper and the store): no TensorFlow, no scikit-optimize, no kubernetes client;
and beside a PyTorch image's own google-cloud-storage it must not pin another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from kubetune import __version__
from kubetune.contract import TrialRequest, TrialResult, result_object, trial_command
from kubetune.kinds import PROGRAM, ProgramSettings
from kubetune.store import open_store
from tests import REPO
from tests.gcs_emulator import FakeGCS

OLDEST = REPO / ".venv-oldest"
DIST = REPO / "dist"


def floors() -> dict[str, str]:
    out = subprocess.run([sys.executable, str(REPO / "mk" / "floors.py")], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return {name.lower(): version for name, version in (line.split("==") for line in out.split())}


_VERSIONS = """
import importlib.metadata as m, json, sys

def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None

print(json.dumps({n: version(n) for n in sys.argv[1:]}))
"""


def installed(names: list[str]) -> dict[str, str | None]:
    """The versions of ``names`` in the oldest venv (None: not installed)."""
    argv = [str(OLDEST / "bin" / "python"), "-c", _VERSIONS, *names]
    found: dict[str, str | None] = json.loads(
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    )
    return found


def test_make_dist_builds_a_wheel_and_an_sdist_of_the_package_alone() -> None:
    wheel = DIST / f"kubetune-{__version__}-py3-none-any.whl"
    sdist = DIST / f"kubetune-{__version__}.tar.gz"
    names = zipfile.ZipFile(wheel).namelist()
    assert "kubetune/trial/program.py" in names and "kubetune/testing/launcher.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    with tarfile.open(sdist) as tar:
        assert f"kubetune-{__version__}/pyproject.toml" in tar.getnames()


def test_the_oldest_allowed_versions_are_the_ones_installed_and_nothing_heavy_is() -> None:
    wanted = floors()
    got = installed([*wanted, "tensorflow", "scikit-optimize", "kubernetes", "numpy"])
    assert {n: got[n] for n in wanted} == {n: _padded(v) for n, v in wanted.items()}
    assert (got["tensorflow"], got["scikit-optimize"], got["kubernetes"], got["numpy"]) == (None,) * 4


def _padded(version: str) -> str:
    """pip's ``==2.7`` installs 2.7.0."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def test_a_program_trial_runs_with_the_oldest_versions_against_both_stores(
    tmp_path: Path, gcs: FakeGCS, bucket: str
) -> None:
    command = f"{sys.executable} -c \"print('kubetune: epoch=1 score=0.25'); print('kubetune: score={{x}}')\""
    for index, store in enumerate([str(tmp_path / "store"), f"gs://{bucket}/oldest"]):
        req = TrialRequest(store, "oldest", index, {"x": 0.5}, ProgramSettings(command=command), "score")
        argv = [str(OLDEST / "bin" / "kubetune"), *trial_command(req, PROGRAM.subcommand)[1:]]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "STORAGE_EMULATOR_HOST": gcs.host})  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        result = TrialResult.from_json(open_store(store).get(result_object(index)))
        assert result.succeeded and result.objective_value == 0.5
        assert result.epoch_metrics == [{"score": 0.25}]
