"""Benchmarks: `make bench` regenerates BENCHMARKS.md, `make bench-smoke` keeps them working.

Benchmarks are not tests. Each module measures one thing and returns a
:class:`bench.common.Section` (markdown tables plus the raw numbers); ``python
-m bench`` runs them and writes the report. Every table names the machine,
gives medians of repeated runs, and states comparisons as ratios measured in
the same run with the variants interleaved (A B A B ...), because the 2-core
machines this runs on are shared and drift by +-20 % from minute to minute.

Each module also has a smoke mode (``Context.smoke``): the same code path on
tiny inputs, seconds long, run by tests/test_bench_smoke.py in CI.
"""
