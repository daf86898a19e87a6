#!/usr/bin/env bash
# Build Kueue's manager (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy
# into the test control plane's assets folder, with the manifests the queueing
# tests install copied from the same module: its CRDs and webhook
# configurations (kueue-config/).
#
# Kept apart from build-binaries.sh, as build-kwok.sh is, so that its stamp
# does not make the control plane rebuild. Idempotent: a stamp names the
# version built. The folder is printed on the last line of stdout. A cold build
# takes about 3 minutes on 2 cores (an 87 MB binary).
set -euo pipefail

KUEUE_VERSION=v0.17.0      # must match tools/kueue/go.mod (checked below)
STAMP_CONTENT="kueue=${KUEUE_VERSION}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${here}/tools/kueue"
assets="$(bash "${here}/build-binaries.sh" | tail -n1)"
stamp="${assets}/.kueue-version"

log() { echo "build-kueue: $*" >&2; }

built() {
    [[ -x "${assets}/kueue" && -d "${assets}/kueue-config" && -f "${stamp}" \
        && "$(cat "${stamp}")" == "${STAMP_CONTENT}" ]]
}

if built; then
    echo "${assets}"
    exit 0
fi

command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
grep -Eq "^\s*sigs.k8s.io/kueue ${KUEUE_VERSION}( |$)" "${tools}/go.mod" \
    || { log "tools/kueue/go.mod does not require kueue ${KUEUE_VERSION}"; exit 1; }
# The lock build-binaries.sh takes: one build in this folder at a time.
exec 9>"${assets}/.lock"
flock 9
if built; then
    echo "${assets}"
    exit 0
fi

staging="$(mktemp -d "${assets}/.build.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT
start=$SECONDS
log "building kueue ${KUEUE_VERSION}"
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
echo "${STAMP_CONTENT}" > "${stamp}"
log "built in $((SECONDS - start)) s"
echo "${assets}"
