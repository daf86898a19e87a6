"""A stand-in trial that speaks the real contract, for fault injection and benchmarks.

It parses the same command line as ``kubetune trial`` and writes through the
same store, but instead of training it sleeps and then behaves as told by
``KUBETUNE_FAKE_TRIAL`` (JSON): ``{"default": {...}, "<index>": {...}}`` with keys
``sleep`` (seconds), ``exit`` (exit code without writing), ``hang`` (never end),
``write`` ("ok" | "malformed" | "out_of_range" | "nan"). The objective comes
from tests.synthetic.objective, so the GP has something real to learn.

``shim_dir`` makes a folder whose ``kubetune`` runs this for ``kubetune trial``
and the real console script for everything else: put it first on PATH (the
local kubelet's extra_env, or a LocalLauncher's executable).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kubetune.contract import (
    TrialResult,
    failed_result,
    parse_trial_args,
    result_object,
)
from kubetune.store import AlreadyExists, open_store
from tests.synthetic import objective

REPO = Path(__file__).resolve().parent.parent
ENV = "KUBETUNE_FAKE_TRIAL"


def behaviour(index: int) -> dict[str, Any]:
    table = json.loads(os.environ.get(ENV) or "{}")
    return {**table.get("default", {}), **table.get(str(index), {})}


def record(index: int, params: dict[str, Any], metric: str, how: str) -> bytes:
    value = objective(params)
    if how == "malformed":
        return b'{"index": ' + str(index).encode() + b', "status": "succ'
    if how == "out_of_range":
        return json.dumps({"index": index, "status": "succeeded", "params": params, "objective": metric,
                           "objective_value": 1.7, "metrics": {metric: 1.7}}).encode()  # fmt: skip
    if how == "nan":
        return failed_result(index, params, metric, "loss became NaN at epoch 1").to_json()
    result = TrialResult(index=index, status="succeeded", params=params, objective=metric,
                         objective_value=value, metrics={metric: value}, wall_time_s=0.0)  # fmt: skip
    return result.to_json()


def main(argv: list[str]) -> int:
    req = parse_trial_args(argv)
    how = behaviour(req.index)
    time.sleep(float(how.get("sleep", 0)))
    if how.get("hang"):
        while True:
            time.sleep(3600)
    if "exit" in how:
        return int(how["exit"])
    try:
        open_store(req.store).create(
            result_object(req.index), record(req.index, req.params, req.objective, how.get("write", "ok"))
        )
    except AlreadyExists:
        return 4
    return 0


def shim_dir(folder: Path) -> Path:
    """A folder holding a ``kubetune`` that fakes trials and is real otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "kubetune"
    python = Path(sys.executable)
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = trial ]; then shift; cd {REPO} && exec {python} -m tests.fake_trial "$@"; fi\n'
        f'exec {python.parent / "kubetune"} "$@"\n'
    )
    shim.chmod(0o755)
    return folder


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
