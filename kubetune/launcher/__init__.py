"""How a trial runs: one slim interface, a local subprocess or a Kubernetes Job behind it.

Both launchers run the same command line (``contract.trial_command``); the
study loop neither knows nor cares which one it holds. What users see of a
study besides the store (Job labels, Events) is a study observer's job
(:mod:`kubetune.controller.observer`), not a launcher's.
"""

from kubetune.launcher._base import Cause, Launcher, TrialExit, exit_reason
from kubetune.launcher.local import LocalLauncher

__all__ = ["Cause", "Launcher", "LocalLauncher", "TrialExit", "exit_reason"]
