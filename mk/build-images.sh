#!/usr/bin/env bash
# Build the controller and trial images from controller/Dockerfile and
# trial_image/Dockerfile, unchanged, with podman (no daemon); the same script a
# release pipeline runs. Run from anywhere; the build context is the repository.
#
#   mk/build-images.sh [--cpu] [--push]
#
# Tags are content hashes (Dockerfile, build arguments and every file the build
# context holds), so an unchanged tree reuses the images it built before and a
# changed one never overwrites them. Layers are cached by podman: a source
# change rebuilds only the last layers.
#
# Environment:
#   IMAGE_PREFIX   where the images are named (and pushed): PREFIX/controller,
#                  PREFIX/trial. Default ghcr.io/kubetune (the chart's default).
#   BASE_IMAGE_FROM  "registry" (default): podman pulls debian:bookworm-slim
#                  when it is not there; "mmdebstrap": build that base from
#                  Debian's packages instead (machines without Docker Hub).
#   BUILD_CA       a CA bundle pip must trust inside the build (a TLS-inspecting
#                  proxy); mounted read-only into the build, never copied into an
#                  image. Default: $PIP_CERT when set.
# --cpu     the trial image with tensorflow-cpu (CPU clusters, the tests)
# --push    push both images, and the chart as an OCI artifact to
#           oci://$IMAGE_PREFIX/charts (helm from build-binaries.sh, or $HELM)
#
# Prints `controller=IMAGE` and `trial=IMAGE` as its last two lines.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/.." && pwd)"
prefix="${IMAGE_PREFIX:-ghcr.io/kubetune}"
base_from="${BASE_IMAGE_FROM:-registry}"
build_ca="${BUILD_CA:-${PIP_CERT:-}}"
base_image=docker.io/library/debian:bookworm-slim
cpu=false
push=false
for arg in "$@"; do
    case "${arg}" in
        --cpu) cpu=true ;;
        --push) push=true ;;
        *) echo "build-images: unknown argument ${arg} (expected --cpu or --push)" >&2; exit 2 ;;
    esac
done

log() { echo "build-images: $*" >&2; }

ensure_base() {
    podman image exists "${base_image}" && return 0
    case "${base_from}" in
        registry) podman pull "${base_image}" >&2 ;;
        mmdebstrap)
            log "building ${base_image} with mmdebstrap"
            local tmp
            tmp="$(mktemp -d)"
            # apt's lists are dropped as in Debian's own slim image; apt-get
            # update in a Dockerfile fetches them again.
            mmdebstrap --variant=minbase --mode=root --quiet \
                --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
                bookworm "${tmp}/base.tar" \
                "deb http://deb.debian.org/debian bookworm main" \
                "deb http://deb.debian.org/debian bookworm-updates main" \
                "deb http://deb.debian.org/debian-security bookworm-security main" >&2
            podman import --change 'CMD ["bash"]' "${tmp}/base.tar" "${base_image}" >&2
            rm -rf "${tmp}"
            ;;
        *) log "BASE_IMAGE_FROM must be registry or mmdebstrap, not ${base_from}"; exit 2 ;;
    esac
}

# sha256 of the Dockerfile, the build arguments and the build context as
# .dockerignore leaves it (pyproject.toml, README.md, kubetune/ minus caches).
content_tag() {
    local dockerfile="$1" args="$2"
    {
        sha256sum "${dockerfile}" | cut -d' ' -f1
        echo "${args}"
        (cd "${root}" && find pyproject.toml README.md constraints.txt kubetune -type f -not -path '*/__pycache__/*' \
            | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -c1-16
}

build() {
    local name="$1" dockerfile="$2"
    shift 2
    local image
    image="${prefix}/${name}:$(content_tag "${root}/${dockerfile}" "$*")"
    if podman image exists "${image}"; then
        log "${image} is up to date"
    else
        local start=${SECONDS} volumes=()
        if [[ -n "${build_ca}" ]]; then
            local conf
            conf="$(mktemp)"
            printf '[global]\ncert = /run/host-ca.crt\n' > "${conf}"
            volumes=(-v "${build_ca}:/run/host-ca.crt:ro" -v "${conf}:/etc/pip.conf:ro")
        fi
        log "building ${image}"
        # The hard open-files limit of some hosts is below podman's default ask.
        podman build --layers --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" \
            "${volumes[@]}" "$@" -f "${root}/${dockerfile}" -t "${image}" "${root}" >&2
        [[ -n "${build_ca}" ]] && rm -f "${conf}"
        log "built ${image} in $((SECONDS - start)) s"
    fi
    if ${push}; then
        podman push "${image}" >&2
    fi
    echo "${image}"
}

push_chart() {
    local helm="${HELM:-$(bash "${root}/tests/cluster/build-binaries.sh" | tail -n1)/helm}" tmp
    tmp="$(mktemp -d)"
    "${helm}" package "${root}/charts/kubetune" --destination "${tmp}" >&2
    "${helm}" push "${tmp}"/kubetune-*.tgz "oci://${prefix}/charts" >&2
    rm -rf "${tmp}"
}

ensure_base
trial_args=()
# The version the images use, read from constraints.txt.
${cpu} && trial_args=(--build-arg "TENSORFLOW=$(grep -o "^tensorflow-cpu==[0-9.]*" "${root}/constraints.txt")")
controller="$(build controller controller/Dockerfile)"
trial="$(build trial trial_image/Dockerfile "${trial_args[@]}")"
${push} && push_chart
echo "controller=${controller}"
echo "trial=${trial}"
