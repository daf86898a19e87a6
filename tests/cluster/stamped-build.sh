# Sourced by build-kueue.sh and build-kwok.sh: the frame around building one
# tool into the test control plane's assets folder (build-binaries.sh's, which
# it builds first when missing).
#
# The caller sets TOOL (its name in logs and in the stamp's file name) and
# STAMP_CONTENT (the version built), and defines `present` (true when the
# tool's files are in "${assets}") and `build_into STAGING` (builds them in
# STAGING, then moves them into "${assets}"). `stamped_build` builds only when
# a file or the stamp is missing or stale, one build in the folder at a time,
# and prints the folder on the last line of stdout.

assets="$(bash "$(dirname "${BASH_SOURCE[0]}")/build-binaries.sh" | tail -n1)"
stamp="${assets}/.${TOOL}-version"

log() { echo "build-${TOOL}: $*" >&2; }

built() { present && [[ -f "${stamp}" && "$(cat "${stamp}")" == "${STAMP_CONTENT}" ]]; }

stamped_build() {
    if ! built; then
        command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
        # The lock build-binaries.sh takes; whoever waited finds the tool built.
        exec 9>"${assets}/.lock"
        flock 9
        built || _build
    fi
    echo "${assets}"
}

_build() {
    local staging start=$SECONDS
    staging="$(mktemp -d "${assets}/.build.XXXXXX")"
    trap "rm -rf '${staging}'" EXIT
    log "building ${STAMP_CONTENT}"
    build_into "${staging}"
    echo "${STAMP_CONTENT}" > "${stamp}"
    log "built in $((SECONDS - start)) s"
}
