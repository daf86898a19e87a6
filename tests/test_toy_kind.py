"""A third trial kind, defined in this file alone, and the tests that it runs with no edit elsewhere.

The toy trains nothing: its "model" is a bowl, ``score = 1 - (x - 0.3)^2 *
steepness`` plus a little seeded noise, reported after each of two epochs.
It registers as a package would (an entry point in group ``kubetune.kinds``,
here from a dist-info folder the fixture writes onto the path), and then a
spec with ``trial: {kind: toy}`` runs through ``kubetune run``, the local
launcher and its trial processes (``kubetune trial toy ...``), the launcher
contract suite, the views and the confirmation phase, as the built-in kinds do.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune import kinds
from kubetune.contract import TrialRequest, TrialResult
from kubetune.kinds import TrialKind
from kubetune.launcher import Launcher, LocalLauncher
from kubetune.settings import setting
from kubetune.store import Store
from kubetune.testing.launcher import LauncherContract, MakeLauncher, MakeRequest
from kubetune.trial.epochs import EpochReporter

REPO = Path(__file__).resolve().parent.parent
BEHAVIOUR_ENV = "TOY_BEHAVIOUR"  # the launcher contract's table: {"INDEX": {"exit": N} | {"hang": true}}


@dataclass(frozen=True)
class ToySettings:
    steepness: float = setting(2.0, minimum=0.0, help="how sharply the score falls away from x=0.3")
    seed: int = setting(0, minimum=0, help="seeds the noise")


TOY = TrialKind(
    name="toy",
    settings_type=ToySettings,
    trainer="tests.test_toy_kind:train",
    subcommand=("toy",),
    metrics={"score": "maximize", "miss": "minimize"},
    epoch_metrics=frozenset({"score", "miss"}),
    seed="seed",
)


def train(req: TrialRequest, store: Store, started: float, log: Any) -> TrialResult:
    """Two epochs of the bowl, each reported; what the launcher contract's table asks of this index."""
    how = json.loads(os.environ.get(BEHAVIOUR_ENV) or "{}").get(str(req.index), {})
    if "exit" in how:
        raise SystemExit(int(how["exit"]))
    while how.get("hang"):
        time.sleep(3600)
    settings: ToySettings = req.settings
    x = float(req.params["x"])
    noise = 0.01 * math.sin(7.0 * settings.seed + req.index)
    reporter = EpochReporter(store, req.index, {})
    for epoch in (1, 2):
        miss = abs(x - 0.3) * (3 - epoch)
        reporter.report(epoch, {"score": 1 - miss**2 * settings.steepness + noise, "miss": miss})
    final = reporter.curve[-1]
    log.info("bowl", x=x, score=final["score"])
    return TrialResult(index=req.index, status="succeeded", params=req.params, objective=req.objective,
                       objective_value=final[req.objective], metrics=final, epoch_metrics=reporter.curve,
                       last_epoch=2, seed=settings.seed, wall_time_s=time.time() - started)  # fmt: skip


# --- registration, as a package's entry point ------------------------------------------------


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on the path holding the toy's entry point; the registry rebuilt with it, then without."""
    folder = tmp_path_factory.mktemp("toy-kind")
    info = folder / "kubetune_toy_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kubetune-toy-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kubetune.kinds]\ntoy = tests.test_toy_kind:TOY\n")
    sys.path.insert(0, str(folder))
    kinds.registry.cache_clear()
    yield folder
    sys.path.remove(str(folder))
    kinds.registry.cache_clear()


def env_with(folder: Path) -> dict[str, str]:
    """Where a child process (a controller, a trial) finds the toy: its entry point, and this file."""
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO), os.environ.get("PYTHONPATH", "")])}


KUBETUNE = str(Path(sys.executable).parent / "kubetune")
SPEC = """
name: toy
objective: {metric: score}
space:
  - {name: x, type: real, low: 0, high: 1}
  - {name: shape, type: categorical, values: [round, flat]}
optimizer: {n_initial_points: 3, random_state: 0}
budget: {max_trials: 6, parallel: 2}
stopping: {rule: median, min_trials: 2, max_epochs: 2}
confirm: {top_k: 2, seeds: 2}
trial: {kind: toy, steepness: 3.0}
"""


def test_the_toy_kind_runs_a_study_end_to_end(registered: Path, tmp_path: Path) -> None:
    spec = tmp_path / "toy.yaml"
    spec.write_text(SPEC)
    store = tmp_path / "store"
    env = {**os.environ, **env_with(registered)}
    run = subprocess.run([KUBETUNE, "run", str(spec), "--store", str(store)], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    best = json.loads(subprocess.run([KUBETUNE, "best", str(store)], env=env, capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip
    assert best["confirmed"]["n"] == 2 and set(best["metrics"]) == {"score", "miss"}
    assert best["params"]["x"] == pytest.approx(0.3, abs=0.35)
    rows = list(csv.DictReader(io.StringIO((store / "history.csv").read_text())))
    assert len(rows) == 6 and set(rows[0]) >= {"param.x", "param.shape", "metric.score", "metric.miss"}
    assert all(row["status"] in ("succeeded", "pruned") for row in rows)
    status = json.loads(subprocess.run([KUBETUNE, "status", str(store), "-o", "json"], env=env,
                                       capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert {tuple(row["metrics"]) for row in status["leaderboard"] if row["status"] == "succeeded"} == {
        ("score", "miss")
    }
    page = (store / "report.html").read_text()
    assert "each trained again with seeds 1, 2" in page and "images/s" not in page


def test_nothing_outside_this_file_names_the_toy() -> None:
    """The acceptance: a third kind needs no edit to kubetune."""
    sources = [p for p in (REPO / "kubetune").rglob("*.py")] + [REPO / "pyproject.toml"]
    assert [str(p) for p in sources if "toy" in p.read_text().lower()] == []


@pytest.mark.usefixtures("registered")
class TestToyLauncher(LauncherContract):
    """The launcher contract, with the toy's trials: real `kubetune trial toy` processes."""

    @pytest.fixture
    def store_uri(self, tmp_path: Path) -> str:
        return str(tmp_path / "store")

    @pytest.fixture
    def trial_request(self) -> MakeRequest:
        def make(store_uri: str, index: int) -> TrialRequest:
            return TrialRequest(store_uri, "toy", index, {"x": 0.5, "shape": "round"}, ToySettings(), "score")

        return make

    @pytest.fixture
    def launcher(self, registered: Path, tmp_path: Path) -> MakeLauncher:
        def make(behaviour: dict[str, Any]) -> Launcher:
            env = {**env_with(registered), BEHAVIOUR_ENV: json.dumps(behaviour)}
            return LocalLauncher(tmp_path / "logs", env=env)

        return make
