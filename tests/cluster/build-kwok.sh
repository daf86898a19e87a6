#!/usr/bin/env bash
# Build kwok (sigs.k8s.io/kwok's `kwok` controller, which fakes nodes and pod
# lifecycles; not kwokctl) from the Go module proxy into the test control
# plane's assets folder, for the kwok benchmark (bench/kwok.py).
#
# Kept apart from build-binaries.sh so that its stamp, and the test cluster's
# binaries, do not change for a benchmark-only tool. Idempotent: a stamp names
# the version built (stamped-build.sh). The folder is printed on the last line
# of stdout, like build-binaries.sh (which this calls first: it builds the
# control plane when missing). A cold build takes about 5 minutes on 2 cores.
set -euo pipefail

# v0.8.0 requires the k8s.io v0.36 client libraries, as the control plane's v1.36.
KWOK_VERSION=v0.8.0
TOOL=kwok
STAMP_CONTENT="kwok=${KWOK_VERSION}"

present() { [[ -x "${assets}/kwok" ]]; }

build_into() {
    # kwok's go.mod has no replace directives: `go install` builds it against its own
    # go.sum. Its version constants are in its source, so no -X stamps are needed.
    CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$1" \
        go install -p 2 -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
    mv -f "$1/kwok" "${assets}/kwok"
}

# shellcheck source=stamped-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/stamped-build.sh"
stamped_build
