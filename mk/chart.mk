# The Helm chart's plain-YAML twin, manifests/kubetune.yaml, for `kubectl apply`
# users, and the Study CRD the chart installs. Included from the top-level
# Makefile; runs alone too:
#   make -f mk/chart.mk manifests | check-manifests | crd | check-crd

# helm built from source with the test control plane (build-binaries.sh prints
# its assets folder last); override with HELM=helm to use your own.
HELM ?= $(shell bash tests/cluster/build-binaries.sh | tail -n1)/helm
CHART := charts/kubetune
MANIFESTS := manifests/kubetune.yaml
# The render kubectl users start from: release "kubetune" in namespace
# "kubetune", and a store they must change. --skip-tests: the helm test pod is
# not a workload, and kubectl would run it once at apply time.
MANIFESTS_FLAGS := --namespace kubetune --set store=gs://change-me/studies/fashion-mnist --skip-tests

define MANIFESTS_HEADER
# kubetune: the Helm chart charts/kubetune rendered as plain YAML for
# `kubectl apply`. Generated: do not edit here; edit the chart and run
#   make manifests
# which runs
#   helm template kubetune charts/kubetune $(MANIFESTS_FLAGS)
# (CI's `make check-manifests` fails when this file and the chart drift apart.)
#
# To use it, edit in a copy:
#   - gs://change-me/studies/fashion-mnist (the controller's --store): your
#     bucket and prefix (GCS bucket names are lower case, as the chart checks);
#   - the ConfigMap's study.yaml (the study) and job.yaml (trial image, GPUs,
#     node selector, tolerations, resources);
#   - the ServiceAccount's annotations, e.g. on GKE
#     iam.gke.io/gcp-service-account: NAME@PROJECT.iam.gserviceaccount.com;
#   - the namespace "kubetune", everywhere, if you use another one.
# then:
#   kubectl create namespace kubetune
#   kubectl label namespace kubetune pod-security.kubernetes.io/enforce=restricted
#   kubectl apply -f kubetune.yaml
endef
export MANIFESTS_HEADER

# $(call render-manifests,OUTPUT): the header, then the render.
define render-manifests
{ printf '%s\n' "$$MANIFESTS_HEADER"; "$(HELM)" template kubetune $(CHART) $(MANIFESTS_FLAGS); } > $(1).tmp \
	&& mv -f $(1).tmp $(1) || { rm -f $(1).tmp; exit 1; }
endef

.PHONY: manifests check-manifests

manifests:
	@mkdir -p $(dir $(MANIFESTS))
	@$(call render-manifests,$(MANIFESTS))
	@echo "wrote $(MANIFESTS)"

# The CRD too: the chart installs it from crds/, outside the render.
check-manifests: check-crd
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	&& $(call render-manifests,$$tmp/kubetune.yaml) \
	&& if ! diff -u --label $(MANIFESTS) --label 'fresh render' $(MANIFESTS) $$tmp/kubetune.yaml; then \
		echo "$(MANIFESTS) is out of date with $(CHART): run 'make manifests'" >&2; exit 1; \
	fi

# The Study CustomResourceDefinition, generated from the spec's declarations
# (kubetune/crd.py); Helm installs charts/ crds/ before the templates.
CRD := $(CHART)/crds/study.yaml
CRD_PYTHON ?= .venv/bin/python

.PHONY: crd check-crd

crd:
	@$(CRD_PYTHON) -m kubetune.crd > $(CRD).tmp && mv -f $(CRD).tmp $(CRD) || { rm -f $(CRD).tmp; exit 1; }
	@echo "wrote $(CRD)"

check-crd:
	@$(CRD_PYTHON) -m kubetune.crd | diff -u --label $(CRD) --label 'fresh generation' $(CRD) - \
		|| { echo "$(CRD) is out of date with kubetune/crd.py: run 'make crd'" >&2; exit 1; }
