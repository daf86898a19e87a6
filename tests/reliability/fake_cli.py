"""The real ``kubetune`` command line, with one change: local trials are the fake trial.

    KUBETUNE_TEST_SHIM=<shim folder> python -m tests.reliability.fake_cli run SPEC --store STORE

Everything else is the product's: argument parsing, the SIGTERM handling, the
Study and LocalLauncher, exit codes and the one-line errors. Only the trial
executable LocalLauncher finds beside the interpreter is swapped for the shim
of tests/fake_trial.py, whose behaviour per index comes from KUBETUNE_FAKE_TRIAL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kubetune import cli
from kubetune.launcher import local

SHIM_ENV = "KUBETUNE_TEST_SHIM"


def main(argv: list[str]) -> int:
    trial = str(Path(os.environ[SHIM_ENV]) / "kubetune")
    local._executable = lambda: trial  # what LocalLauncher runs each trial with
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
