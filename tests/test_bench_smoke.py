"""Every benchmark in smoke mode: the same code paths as `make bench`, on tiny inputs, in seconds.

Benchmarks are not tests; this only keeps them working. The numbers are
thrown away (BENCHMARKS.md is left alone). The cluster benchmarks start a
fake-trial kubelet of their own on the session's test control plane.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from bench.common import CACHE, Context, context
from tests.cluster.controlplane import ControlPlane


@pytest.fixture(scope="module")
def bench_context(prepared_data_dir: Path) -> Iterator[Context]:
    # Not under /tmp: trial pods of the bench kubelet get an emptyDir there.
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
@pytest.mark.parametrize("name", ["throughput", "search", "memory", "stopping", "seed_study"])
def test_benchmark_smoke(bench_context: Context, name: str) -> None:
    check(bench_context, name)


@pytest.mark.cluster
@pytest.mark.parametrize("name", ["controller", "scaling"])
def test_cluster_benchmark_smoke(bench_context: Context, control_plane: ControlPlane, name: str) -> None:
    bench_context.kubeconfig = control_plane.kubeconfig
    check(bench_context, name)
