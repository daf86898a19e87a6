"""What every benchmark shares: the machine's name, medians, interleaving, markdown tables."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from bench.testbed import BenchCluster

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
# What took long to make and would be made the same again (real evaluations, seeded runs), kept in
# git: a fresh clone reuses it instead of spending the hours (bench/kept_runs.py).
KEPT_DATA = REPO / "bench" / "data"
PYTHON = sys.executable
T = TypeVar("T")


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    ram_gib: float

    def line(self) -> str:
        return f"machine: {self.cores} cores (nproc), {self.cpu}, {self.ram_gib:.0f} GiB RAM, no GPU"


def machine() -> Machine:
    """nproc, the CPU model from /proc/cpuinfo, and the RAM from /proc/meminfo."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    ram_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        ram_kib = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), 0)
    return Machine(os.cpu_count() or 0, cpu, ram_kib / 2**20)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: each round's pair ran back to back, so slow drift cancels."""
    return median([a / b for a, b in zip(numerators, denominators, strict=True) if b])


def interleave(
    variants: Sequence[str], rounds: int, run: Callable[[str], T], *, concurrent: bool = False
) -> dict[str, list[T]]:
    """Run every variant once per round, in the same order (A B A B ...): drift hits all alike.

    ``concurrent`` runs each round's variants at once, in threads: only for
    smoke runs, whose timings mean nothing and which should end quickly.
    """
    out: dict[str, list[T]] = {v: [] for v in variants}
    for r in range(rounds):
        if concurrent:
            with ThreadPoolExecutor(len(variants)) as pool:
                for v, result in zip(variants, pool.map(run, variants), strict=True):
                    out[v].append(result)
            continue
        for v in variants:
            log(f"round {r + 1}/{rounds}: {v}")
            out[v].append(run(v))
    return out


def log(message: str) -> None:
    # Progress on stderr: a full run takes half an hour and should show it is alive.
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats keep 3 significant digits."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


@dataclass
class Section:
    """One benchmark's part of BENCHMARKS.md, and its raw numbers for bench/.cache/results."""

    name: str
    title: str
    body: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *paragraphs: str) -> None:
        self.body.extend(paragraphs)

    def markdown(self) -> str:
        return "\n\n".join([f"## {self.title}", *self.body]) + "\n"


@dataclass
class Context:
    """What a benchmark run gets: smoke or full, a scratch folder, shared resources
    (``cluster``: where cluster benchmarks run; made on first use unless given)."""

    smoke: bool
    work: Path
    data_dir: Path | None = None
    cluster: BenchCluster | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _shared: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], T]) -> T:
        """A resource made on first use and shared by later benchmarks (the test cluster, data)."""
        if key not in self._shared:
            self._shared[key] = make()
        value: T = self._shared[key]
        return value

    def close(self) -> None:
        self.stack.close()


@contextlib.contextmanager
def context(smoke: bool, work: Path) -> Iterator[Context]:
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(smoke=smoke, work=work)
    try:
        yield ctx
    finally:
        ctx.close()
