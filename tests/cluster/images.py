"""Container images for the test node, built here into podman's local store.

- pause_image(): the pod sandbox image, from pause.c (gcc -static, FROM scratch);
- project_images(): the controller and trial images, from their Dockerfiles,
  by mk/build-images.sh (the release build, with the CPU TensorFlow);
- fake_trial_image(): the controller image plus tests/fake_trial.py as
  `kubetune trial`, for fault injection without training;
- program_image(): the controller image plus examples/program's script.

All are tagged by content, so a second session finds them built. The node
imports them into its containerd (Node.load_images).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PAUSE_SOURCE = HERE / "pause.c"
FAKE_TRIAL = REPO_ROOT / "tests" / "fake_trial.py"
PROGRAM_SOURCE = REPO_ROOT / "examples" / "program" / "train.py"
BUILD_SCRIPT = REPO_ROOT / "mk" / "build-images.sh"
BUILD_TIMEOUT_S = 45 * 60  # cold: a Debian base, then TensorFlow from PyPI


class ImageBuildError(RuntimeError):
    """An image could not be built."""


def _run(argv: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if proc.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stderr[-6000:]}")
    return proc.stdout


def podman_has(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False, timeout=60).returncode == 0


def pause_image() -> str:
    """localhost/kubetune/pause:<hash of pause.c>, built when missing."""
    digest = hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:16]
    image = f"localhost/kubetune/pause:{digest}"
    if podman_has(image):
        return image
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        _run(["gcc", "-static", "-O2", "-o", str(root / "pause"), str(PAUSE_SOURCE)], 120)
        tar = Path(tmp, "rootfs.tar")
        _run(["tar", "-C", str(root), "--owner=0", "--group=0", "-cf", str(tar), "pause"], 60)
        # The same uid as registry.k8s.io's pause: no process of the sandbox is root.
        _run(
            [
                "podman", "import",
                "--change", 'ENTRYPOINT ["/pause"]',
                "--change", "USER 65535:65535",
                str(tar), image,
            ],
            300,
        )  # fmt: skip
    return image


@dataclass(frozen=True)
class ProjectImages:
    controller: str
    trial: str


def project_images() -> ProjectImages:
    """The controller and (CPU) trial images; built when their content changed."""
    # Docker Hub is not reachable from test machines: the Debian base is made
    # from Debian's own packages (mmdebstrap) under the name FROM expects.
    env = {**os.environ, "BASE_IMAGE_FROM": "mmdebstrap"}
    out = _run(["bash", str(BUILD_SCRIPT), "--cpu"], BUILD_TIMEOUT_S, env=env)
    refs = dict(line.split("=", 1) for line in out.strip().splitlines()[-2:])
    return ProjectImages(controller=refs["controller"], trial=refs["trial"])


# `kubetune trial ...` runs the fake trial; any other subcommand the real CLI.
FAKE_TRIAL_SHIM = """#!/bin/sh
if [ "$1" = trial ]; then shift; exec python3 /opt/fake-trial/fake_trial.py "$@"; fi
exec /opt/kubetune/bin/kubetune "$@"
"""
FAKE_TRIAL_CONTAINERFILE = """FROM {base}
COPY fake_trial.py /opt/fake-trial/fake_trial.py
COPY --chmod=755 kubetune /opt/fake-trial/bin/kubetune
ENV PATH=/opt/fake-trial/bin:/opt/kubetune/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["kubetune", "trial"]
"""


def fake_trial_image(controller: str) -> str:
    """localhost/kubetune/fake-trial:<hash>: the controller image (Python, the
    contract and the store) with tests/fake_trial.py as `kubetune trial`."""
    files = {"fake_trial.py": FAKE_TRIAL.read_text(), "kubetune": FAKE_TRIAL_SHIM}
    return _derived_image("fake-trial", FAKE_TRIAL_CONTAINERFILE.format(base=controller), files)


# examples/program/Dockerfile on the controller image (kubetune's base install
# and Python; Docker Hub's python image is out of reach here).
PROGRAM_CONTAINERFILE = """FROM {base}
WORKDIR /app
COPY train.py examples/program/train.py
"""


def program_image(controller: str) -> str:
    """localhost/kubetune/example-program:<hash>: examples/program's train.py
    where its spec's relative command expects it, as its Dockerfile puts it."""
    files = {"train.py": PROGRAM_SOURCE.read_text()}
    return _derived_image("example-program", PROGRAM_CONTAINERFILE.format(base=controller), files)


def _derived_image(name: str, containerfile: str, files: dict[str, str]) -> str:
    """localhost/kubetune/NAME:<hash of its content>, built (offline) when missing."""
    digest = hashlib.sha256("\0".join([containerfile, *files, *files.values()]).encode()).hexdigest()[:16]
    image = f"localhost/kubetune/{name}:{digest}"
    if podman_has(image):
        return image
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "Containerfile").write_text(containerfile)
        for file, text in files.items():
            (context / file).write_text(text)
        _run(["podman", "build", "--network", "none", "-t", image, str(context)], 600)
    return image
