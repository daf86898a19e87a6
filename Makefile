# Everything a fresh Debian/Ubuntu machine with Python 3.11 needs lives here:
# `make demo` runs a real study, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_STORE ?= demo-store
PYTEST_ARGS ?=
# Two pytest-xdist workers: the cluster's tests on one, the local ones beside it
# (tests/conftest.py groups them); PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2

.PHONY: demo test lint venv dist oldest dataset binaries bench bench-smoke clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[controller,trial,dev,bench]'
	touch $@

venv: $(BIN)/.installed

# The wheel and sdist a user copies into a training image (README, "A program as a trial").
DIST := dist
$(DIST)/.built: $(BIN)/.installed README.md $(shell find kubetune -name '*.py')
	rm -rf $(DIST)
	$(BIN)/python -m build --outdir $(DIST) . >/dev/null
	touch $@

dist: $(DIST)/.built

# The base package from that wheel, beside the oldest versions its ranges allow
# (mk/floors.py reads them from pyproject.toml): what tests/test_dist.py runs.
OLDEST := .venv-oldest
$(OLDEST)/.installed: $(DIST)/.built mk/floors.py
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(BIN)/python mk/floors.py > $(OLDEST).txt
	$(OLDEST)/bin/pip install --quiet -c $(OLDEST).txt $(DIST)/kubetune-*.whl
	touch $@

oldest: $(OLDEST)/.installed

# Fashion-MNIST offline: Debian ships the four IDX files.
$(FASHION_MNIST)/train-images-idx3-ubyte.gz:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

dataset: venv $(FASHION_MNIST)/train-images-idx3-ubyte.gz
	$(BIN)/kubetune dataset prepare

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, helm,
# fake-gcs-server and Kueue, built from the Go module proxy and cached outside git.
binaries:
	bash tests/cluster/build-binaries.sh
	bash tests/cluster/build-kueue.sh

demo: dataset
	$(BIN)/kubetune run examples/demo.yaml --store $(DEMO_STORE)
	@echo "best trial (kubetune best $(DEMO_STORE)):"
	$(BIN)/kubetune best $(DEMO_STORE)

test: venv oldest $(FASHION_MNIST)/train-images-idx3-ubyte.gz binaries chromium node-packages images-cpu
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_STORE) logs .pytest_cache .mypy_cache .ruff_cache $(DIST) $(OLDEST) $(OLDEST).txt

-include mk/*.mk
