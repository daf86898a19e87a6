#!/usr/bin/env bash
# Build Kueue's manager (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy
# into the test control plane's assets folder, with the manifests the queueing
# tests install copied from the same module: its CRDs and webhook
# configurations (kueue-config/).
#
# Kept apart from build-binaries.sh, as build-kwok.sh is, so that its stamp
# does not make the control plane rebuild. Idempotent: a stamp names the
# version built (stamped-build.sh). The folder is printed on the last line of
# stdout. A cold build takes about 3 minutes on 2 cores (an 87 MB binary).
set -euo pipefail

KUEUE_VERSION=v0.17.0      # must match tools/kueue/go.mod (checked below)
TOOL=kueue
STAMP_CONTENT="kueue=${KUEUE_VERSION}"
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tools/kueue"

present() { [[ -x "${assets}/kueue" && -d "${assets}/kueue-config" ]]; }

build_into() {
    local staging="$1" module
    grep -Eq "^\s*sigs.k8s.io/kueue ${KUEUE_VERSION}( |$)" "${tools}/go.mod" \
        || { log "tools/kueue/go.mod does not require kueue ${KUEUE_VERSION}"; exit 1; }
    # Kueue's own go.mod replaces nothing, but it pins older k8s.io libraries than
    # the control plane: built from tools/kueue, a module of its own.
    (cd "${tools}" && CGO_ENABLED=0 GOFLAGS=-trimpath \
        go build -p 2 -ldflags "-s -w" -o "${staging}/kueue" sigs.k8s.io/kueue/cmd/kueue)
    module="$(cd "${tools}" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
    mkdir -p "${staging}/kueue-config"
    cp -r "${module}/config/components/crd/bases" "${staging}/kueue-config/crd"
    cp "${module}/config/components/webhook/manifests.yaml" "${staging}/kueue-config/webhooks.yaml"
    chmod -R u+w "${staging}/kueue-config"  # the module cache's files are read-only
    rm -rf "${assets}/kueue-config"
    mv -f "${staging}/kueue-config" "${assets}/kueue-config"
    mv -f "${staging}/kueue" "${assets}/kueue"
}

# shellcheck source=stamped-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/stamped-build.sh"
stamped_build
