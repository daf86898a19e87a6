# Benchmarks (bench/). Included from the top-level Makefile; runs alone too:
#   make -f mk/bench.mk bench | bench-smoke
# `bench` runs everything (20-40 min on 2 cores; the search benchmark's trained
# evaluations are cached in bench/.cache, so a re-run is shorter) and
# regenerates BENCHMARKS.md. `bench-smoke` runs each benchmark on tiny inputs
# in seconds, so they keep working; CI runs the same as tests/test_bench_smoke.py.
# The notebook's whole study (60 trials x 3 epochs, about an hour on 2 cores) runs
# only on demand: .venv/bin/python -m bench seed_study (BENCHMARKS.md section 7).
# So do the search suite (17 problems at 20 seeds, about an hour on 2 cores):
# .venv/bin/python -m bench suite (BENCHMARKS.md section 14), and its check on
# held-out problems: .venv/bin/python -m bench holdout (section 15). Both keep
# their runs in git (bench/data/kept-runs): a rerun makes only those whose code changed.

BENCH_PYTHON ?= .venv/bin/python
# From the top-level Makefile: the venv, the dataset's IDX files, the test
# cluster's binaries, its node's Debian packages and the images the cluster
# benchmarks run (alone, this file assumes they are there). The cluster
# benchmarks start a real node: root (or sudo), as `make test` needs.
BENCH_PREREQS := $(if $(BIN),venv binaries node-packages images-cpu $(FASHION_MNIST)/train-images-idx3-ubyte.gz)

.PHONY: bench bench-smoke

# The search benchmark's Optuna GPSampler (bench/search.py) needs torch.
BENCH_GP := $(dir $(BENCH_PYTHON)).bench-gp
$(BENCH_GP): pyproject.toml constraints.txt
	$(dir $(BENCH_PYTHON))pip install --quiet -c constraints.txt -e '.[bench-gp]'
	touch $@

bench: $(BENCH_PREREQS) $(BENCH_GP)
	$(BENCH_PYTHON) -m bench

bench-smoke: $(BENCH_PREREQS)
	$(BENCH_PYTHON) -m pytest -q -p no:cacheprovider tests/test_bench_smoke.py
