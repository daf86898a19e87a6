"""``python -m bench [--smoke] [NAME ...]``: run benchmarks; the full run regenerates BENCHMARKS.md.

Without names every benchmark of RUN_ORDER runs (seed_study and suite, an
hour long each, kwok, half an hour, and holdout, a quarter, only when named). Each one's section is kept in
bench/.cache/results/NAME.md (with its raw numbers in NAME.json), so the
report can be assembled from the latest run of each:
``python -m bench --report-only``; a section with no saved run here is kept as
BENCHMARKS.md has it. ``--smoke`` runs everything on tiny inputs in a scratch
folder and leaves BENCHMARKS.md alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    controller,
    gpu_sharing,
    holdout,
    kueue,
    kwok,
    late_binding,
    memory,
    multi_objective,
    resume,
    scaling,
    search,
    seed_study,
    stopping,
    suite,
    throughput,
)
from bench.common import CACHE, REPO, Context, Section, context, log, machine

BENCHMARKS: dict[str, Callable[[Context], Section]] = {
    "throughput": throughput.run,
    "controller": controller.run,
    "scaling": scaling.run,
    "search": search.run,
    "multi_objective": multi_objective.run,
    "memory": memory.run,
    "stopping": stopping.run,
    "kwok": kwok.run,
    "kueue": kueue.run,
    "gpu_sharing": gpu_sharing.run,
    "resume": resume.run,
    "seed_study": seed_study.run,
    "late_binding": late_binding.run,
    "suite": suite.run,
    "holdout": holdout.run,
}
# The search benchmark trains ~150 small models in this process (TensorFlow's
# memory only grows): it runs last, after the benchmarks that fork processes.
# kwok, seed_study, suite (an hour on two cores) and holdout are left out: each runs only when named.
RUN_ORDER = (
    "throughput", "controller", "scaling", "kueue", "gpu_sharing", "memory", "resume", "search",
    "multi_objective", "stopping", "late_binding",
)  # fmt: skip
RESULTS = CACHE / "results"
REPORT = REPO / "BENCHMARKS.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    p.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    p.add_argument("--smoke", action="store_true", help="seconds-long runs on tiny inputs; no report")
    p.add_argument("--report-only", action="store_true", help="assemble BENCHMARKS.md from saved sections")
    p.add_argument("--work", type=Path, help="scratch folder (default: bench/.cache/work or /smoke)")
    ns = p.parse_args(argv)
    unknown = [n for n in ns.names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}")
    if not ns.report_only:
        work = ns.work or CACHE / ("smoke" if ns.smoke else "work")
        shutil.rmtree(work, ignore_errors=True)
        run_all(ns.names or list(RUN_ORDER), smoke=ns.smoke, work=work)
    if not ns.smoke:
        write_report()
    return 0


def run_all(names: list[str], *, smoke: bool, work: Path, **shared: Path) -> dict[str, Section]:
    """Run the named benchmarks with one context (one test cluster); save each full run's section."""
    sections = {}
    with context(smoke, work) as ctx:
        for key, value in shared.items():
            setattr(ctx, key, value)
        for name in names:
            t0 = time.monotonic()
            sections[name] = section = BENCHMARKS[name](ctx)
            took = time.monotonic() - t0
            log(f"{name}: {took:.0f} s")
            if not smoke:
                _save(section, took)
    return sections


def _save(section: Section, took: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    kept = section.data.get("kept_runs")
    reused = f" ({kept:,} runs kept from earlier runs, not made again: bench/kept_runs.py)" if kept else ""
    footer = f"_Took {took / 60:.1f} min{reused}, finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._"
    (RESULTS / f"{section.name}.md").write_text(section.markdown() + "\n" + footer + "\n")
    (RESULTS / f"{section.name}.json").write_text(json.dumps({"took_s": took, **section.data}, default=str))


def write_report() -> None:
    """BENCHMARKS.md from the saved sections, keeping the file's own for benchmarks not saved here.

    A run of one benchmark on a fresh checkout must not drop the others'
    sections (nor what was written in them by hand).
    """
    saved = [p.read_text() for name in BENCHMARKS if (p := RESULTS / f"{name}.md").exists()]
    kept = re.split(r"(?m)^(?=## \d+\. )", REPORT.read_text())[1:] if REPORT.exists() else []
    by_number = {_number(text): text.rstrip("\n") + "\n" for text in [*kept, *saved]}
    found = [by_number[n] for n in sorted(by_number)]
    minutes = sum(float(m) for m in re.findall(r"(?m)^_Took ([\d.]+) min", "".join(found)))
    head = (
        "# Benchmarks\n\n"
        "Generated by `make bench` (`python -m bench`, code in bench/); do not edit by hand. Benchmarks are "
        "not tests: CI runs only `make bench-smoke` (tests/test_bench_smoke.py), a seconds-long run of each. "
        "The machines are shared and noisy (2 cores; ±20 % from minute to minute), so every number is a "
        "median of repeated runs and every comparison a ratio measured in the same run, the compared "
        f"variants interleaved (A B A B ...). Regenerate with `make bench`; one benchmark with "
        f"`.venv/bin/python -m bench NAME` ({', '.join(RUN_ORDER)}; kwok, seed_study, suite and "
        "holdout only on demand), "
        "then `.venv/bin/python -m bench --report-only` "
        "to reassemble this file from the saved sections.\n\n"
        f"{machine().line()}. Total time of the runs below: {minutes:.0f} min.\n"
    )
    REPORT.write_text(head + "\n" + "\n".join(found))
    log(f"wrote {REPORT}")


def _number(section: str) -> int:
    """A section's number, from its heading ("## 4. Search efficiency")."""
    match = re.match(r"## (\d+)\. ", section)
    if match is None:
        raise ValueError(f"a section without a numbered heading: {section[:60]!r}")
    return int(match.group(1))


if __name__ == "__main__":
    sys.exit(main())
