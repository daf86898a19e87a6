#!/usr/bin/env bash
# Build the binaries of the test control plane from source (no prebuilt
# downloads are reachable here): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, the node's kubelet, helm and fake-gcs-server.
#
# Idempotent: when the assets folder already holds every binary, nothing is
# built. The folder is $KUBEBUILDER_ASSETS when set (envtest's convention, so a
# folder of envtest/prebuilt binaries can be pointed at), else a per-version
# cache folder outside the git tree. The folder is printed on the last line of
# stdout, for callers to capture with `tail -n1`.
#
# A cold build takes about 15 minutes on 2 cores; the Go build cache makes a
# rebuild much faster.
set -euo pipefail

K8S_VERSION=v1.36.3        # must match tools/go.mod (checked below)
ETCD_VERSION=v3.6.16       # must match tools/etcd/go.mod
HELM_VERSION=v3.22.0
FAKE_GCS_VERSION=v1.56.1
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet helm fake-gcs-server)
STAMP_CONTENT="k8s=${K8S_VERSION} node=kubelet etcd=${ETCD_VERSION} helm=${HELM_VERSION}+kube=${K8S_VERSION} fake-gcs-server=${FAKE_GCS_VERSION}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${here}/tools"
assets="${KUBEBUILDER_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/assets/${K8S_VERSION}}"
stamp="${assets}/.kubetune-versions"

log() { echo "build-binaries: $*" >&2; }

have_all() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "${assets}/${b}" ]] || return 1
    done
    # A folder handed to us through KUBEBUILDER_ASSETS is trusted as is; our own
    # cache folder must also carry the stamp of the versions it was built from.
    if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
        [[ -f "${stamp}" && "$(cat "${stamp}")" == "${STAMP_CONTENT}" ]] || return 1
    fi
    return 0
}

if have_all; then
    echo "${assets}"
    exit 0
fi

command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
grep -Eq "^\s*k8s.io/kubernetes ${K8S_VERSION}( |$)" "${tools}/go.mod" \
    || { log "tools/go.mod does not require k8s.io/kubernetes ${K8S_VERSION}"; exit 1; }
grep -Eq "^\s*go.etcd.io/etcd/server/v3 ${ETCD_VERSION}( |$)" "${tools}/etcd/go.mod" \
    || { log "tools/etcd/go.mod does not require etcd ${ETCD_VERSION}"; exit 1; }

mkdir -p "${assets}"
# Serialise concurrent callers (parallel pytest sessions, CI steps): the second
# waits, then finds everything built.
exec 9>"${assets}/.lock"
flock 9
if have_all; then
    echo "${assets}"
    exit 0
fi

export CGO_ENABLED=0
export GOFLAGS=-trimpath
staging="$(mktemp -d "${assets}/.build.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

major="${K8S_VERSION#v}"; major="${major%%.*}"
minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
# Stamp the version the way the Kubernetes release build does, else /version
# reports v0.0.0 (and clients that gate on server version misbehave).
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    kube_ldflags+=" -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    kube_ldflags+=" -X ${pkg}.gitTreeState=clean"
    kube_ldflags+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

start=$SECONDS
log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet ${K8S_VERSION}"
(cd "${tools}" && go build -p 2 -ldflags "${kube_ldflags}" -o "${staging}/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet)

log "building etcd ${ETCD_VERSION}"
(cd "${tools}/etcd" && go build -p 2 -ldflags "-s -w" -o "${staging}/etcd" go.etcd.io/etcd/server/v3)

# helm and fake-gcs-server have no replace directives: plain `go install`.
# The Kubernetes version helm assumes without a cluster (`helm template`,
# `helm lint`, a chart's kubeVersion): helm's Makefile stamps it, `go install`
# alone leaves 1.20. Stamped with the test cluster's version.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X ${pkg}.k8sVersionMajor=${major} -X ${pkg}.k8sVersionMinor=${minor}"
done
log "building helm ${HELM_VERSION}"
GOBIN="${staging}" go install -p 2 -ldflags "${helm_ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"

log "building fake-gcs-server ${FAKE_GCS_VERSION}"
GOBIN="${staging}" go install -p 2 -ldflags "-s -w" \
    "github.com/fsouza/fake-gcs-server@${FAKE_GCS_VERSION}"

for b in "${BINARIES[@]}"; do
    mv -f "${staging}/${b}" "${assets}/${b}"
done
echo "${STAMP_CONTENT}" > "${stamp}"
log "built in $((SECONDS - start)) s"
echo "${assets}"
