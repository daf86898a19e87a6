"""Every benchmark in smoke mode: the same code paths as `make bench`, on tiny inputs, in seconds.

Benchmarks are not tests; this only keeps them working. The numbers are
thrown away (BENCHMARKS.md is left alone). The cluster benchmarks borrow the
session's cluster: its node, the fake trial image and the GCS emulator; the
kwok benchmark starts a control plane of its own, whose nodes kwok simulates.
"""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from bench.common import CACHE, Context, context
from bench.search import NEEDS_TORCH, installed
from bench.testbed import BenchCluster
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kueue import Kueue
from tests.cluster.node import Node
from tests.gcs_emulator import FakeGCS


@pytest.fixture(scope="module")
def bench_context(prepared_data_dir: Path) -> Iterator[Context]:
    work = CACHE / "smoke-tests" / uuid.uuid4().hex[:8]
    with context(True, work) as ctx:
        ctx.data_dir = prepared_data_dir
        yield ctx
    shutil.rmtree(work, ignore_errors=True)


def check(ctx: Context, name: str) -> None:
    section = BENCHMARKS[name](ctx)
    assert section.name == name
    assert "| " in section.markdown(), section.markdown()  # at least one table came out


@pytest.mark.slow  # trains the CNN, on a few hundred images
@pytest.mark.parametrize("name", ["throughput", "search", "memory", "stopping", "seed_study", "gpu_sharing"])
def test_benchmark_smoke(bench_context: Context, name: str) -> None:
    check(bench_context, name)


def test_multi_objective_benchmark_smoke(tmp_path: Path) -> None:
    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["multi_objective"](ctx)
    assert "| kubetune p8 |" in section.markdown() and "**bnh**" in section.markdown()
    runs = section.data["runs"]["bnh"]["kubetune p1"]
    assert len(runs) == 1 and len(runs[0]) == 2 and runs[0][0] <= runs[0][1]  # more trials, no less volume


def test_resume_benchmark_smoke(tmp_path: Path) -> None:
    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["resume"](ctx)
    runs = section.data["runs"]
    # A 1.1 result carries its curve: the restart reads no epoch of a finished trial.
    assert runs["1.1"][0]["gets"] == 2 * section.data["trials"] + 1
    assert runs["1.0"][0]["gets"] == (2 + section.data["epochs"]) * section.data["trials"] + 1


def test_suite_benchmark_smoke(tmp_path: Path) -> None:
    from bench import suite

    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["suite"](ctx)
    assert "| " in section.markdown()
    # Every method ran every smoke problem, and the real table was evaluated into the scratch folder.
    assert set(section.data["main"]) == set(suite.SMOKE_NAMES)
    assert (tmp_path / "suite-tables.json").exists()


def test_holdout_benchmark_smoke(tmp_path: Path) -> None:
    from bench import holdout

    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["holdout"](ctx)
    assert "| " in section.markdown()
    runs = section.data["main"]["beale"]
    # The default, the previous default and the rivals, on every machine: a smoke run leaves torch's out.
    assert set(runs) == set(holdout.METHODS) - set(NEEDS_TORCH)
    assert [len(runs[m][0]) for m in ("kubetune p1", "kubetune p8 global", "random")] == [12, 18, 18]


@pytest.mark.parametrize(
    ("torch", "smoke", "runs_it"), [(True, False, True), (False, False, False), (True, True, False)]
)
def test_optunas_gp_sampler_runs_only_where_torch_is_and_never_in_a_smoke_run(
    monkeypatch: pytest.MonkeyPatch, torch: bool, smoke: bool, runs_it: bool
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if torch else None)
    assert ("optuna GP" in installed(["random", *NEEDS_TORCH], smoke)) is runs_it


def test_late_binding_benchmark_smoke(tmp_path: Path) -> None:
    from bench import late_binding

    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["late_binding"](ctx)
    assert "| " in section.markdown()
    runs = section.data["runs"]["branin"]
    # Launched only into a free quota slot, a point is chosen as parallel 2 chooses it.
    assert runs[late_binding.LATE[0]] == runs[late_binding.ALONE]


@pytest.mark.cluster
@pytest.mark.parametrize("name", ["controller", "scaling", "kueue"])
def test_cluster_benchmark_smoke(
    bench_context: Context,
    control_plane: ControlPlane,
    node: Node,
    fake_image: str,
    gcs: FakeGCS,
    kueue: Kueue,
    name: str,
) -> None:
    # The node's one GPU is the session's: bench trials ask for none.
    bench_context.cluster = BenchCluster(
        control_plane.kubeconfig, node.name, fake_image, gcs.host, gpus=0, control_plane=control_plane
    )
    bench_context.once("kueue", lambda: kueue)  # the session's manager: one per control plane
    check(bench_context, name)


@pytest.mark.cluster
def test_kwok_benchmark_smoke(tmp_path: Path) -> None:
    """A control plane and kwok of its own: every trial's result lands, one Job each, the controller's
    requests told apart from the other clients'."""
    from bench import kwok

    with context(True, tmp_path) as ctx:
        section = BENCHMARKS["kwok"](ctx)
    data, scale = section.data, kwok.SMOKE
    assert len(data["landed"]) == scale.trials
    assert data["controller"]["exit"] == 0 and data["controller"]["peak_rss_mb"] > 0
    assert data["requests"][kwok.CONTROLLER_USER]["create jobs"] == scale.trials
    assert "| " in section.markdown()
