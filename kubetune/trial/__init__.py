"""The trial side: what the trial image runs. Never imports kubernetes or scikit-optimize.

``kubetune trial`` parses the contract's command line for the study's kind,
trains once, and writes the result record once (:mod:`kubetune.trial.runner`).
"""

from kubetune.trial.runner import main

__all__ = ["main"]
