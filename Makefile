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

.PHONY: demo test lint venv dataset binaries bench bench-smoke clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[controller,trial,dev,bench]'
	touch $@

venv: $(BIN)/.installed

# Fashion-MNIST offline: Debian ships the four IDX files.
$(FASHION_MNIST)/train-images-idx3-ubyte.gz:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

dataset: venv $(FASHION_MNIST)/train-images-idx3-ubyte.gz
	$(BIN)/kubetune dataset prepare

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, helm
# and fake-gcs-server, built from the Go module proxy and cached outside git.
binaries:
	bash tests/cluster/build-binaries.sh

demo: dataset
	$(BIN)/kubetune run examples/demo.yaml --store $(DEMO_STORE)
	@echo "best trial (kubetune best $(DEMO_STORE)):"
	$(BIN)/kubetune best $(DEMO_STORE)

test: venv $(FASHION_MNIST)/train-images-idx3-ubyte.gz binaries chromium node-packages images-cpu
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(DEMO_STORE) logs .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
