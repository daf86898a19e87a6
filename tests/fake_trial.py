"""A stand-in trial that speaks the real contract, for fault injection and benchmarks.

It parses the same command line as ``kubetune trial`` and writes through the
same store, but instead of training it sleeps and then behaves as told by
``KUBETUNE_FAKE_TRIAL`` (JSON): ``{"default": {...}, "<index>": {...}}`` with keys
``sleep`` (seconds the trial lasts, counted from its process start, so
that a busy machine's slower Python start-up does not lengthen it),
``exit`` (exit code without writing), ``hang`` (never end), ``oom`` (take
memory until the kernel kills it at the container's limit), ``write``
("ok" | "malformed" | "out_of_range" | "nan" | "forged": trial 1's result
| "list_metrics"), ``epochs`` and ``epoch_s``
(report a learning curve, epoch by epoch, and stop when the controller
asks, unless ``ignore_stop``). Its value is ``objective``,
so the GP has something real to learn. It imports only the contract, the
store and the epoch reporter: eight of it starting at once on a 2-core bench machine then take
little from the controller (0.05 s of CPU each, against 0.14 s before).

``shim_dir`` makes a folder whose ``kubetune`` runs this for ``kubetune trial``
and the real console script for everything else: put it first on PATH (the
LocalLauncher's executable; the fake trial image does the same in a pod).
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    # As `kubetune trial` does: in its container it is the first process, which the kernel
    # spares any SIGTERM (an eviction) it does not handle. Installed before kubetune's imports
    # (a second on a busy node): an eviction during them was lost, the trial ran to its end.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from kubetune.contract import (
    Params,
    TrialRequest,
    TrialResult,
    failed_result,
    parse_trial_args,
    result_object,
)
from kubetune.kinds import CNN, CnnSettings
from kubetune.store import AlreadyExists, Store, open_store
from kubetune.trial.epochs import EpochReporter

ENV = "KUBETUNE_FAKE_TRIAL"
# Not tests.REPO: the fake trial image carries this file alone.
REPO = Path(__file__).resolve().parent.parent


def cnn_request(store_uri: str, index: int) -> TrialRequest:
    """A CNN trial's request, as the launcher contract suite launches them (kubetune.testing)."""
    params: Params = {"learning_rate": 0.003, "num_dense_layers": 1, "num_dense_nodes": 12}
    return TrialRequest(store_uri, "contract", index, params, CnnSettings(), "val_accuracy")


def objective(params: Params) -> float:
    """Peaks at learning_rate 3e-3 with one dense layer, like the real CNN roughly does."""
    lr = float(params["learning_rate"])
    layers = int(params.get("num_dense_layers", 1))
    return 0.92 - 0.05 * (math.log10(lr) + 2.5) ** 2 - 0.01 * (layers - 1)


def seed_noise(seed: int) -> float:
    """What another seed than the search's (0) adds to the objective: deterministic, within ±0.02."""
    return 0.0 if seed == 0 else 0.02 * math.sin(seed * 2.4)


def succeeded(index: int, params: Params, metric: str, value: float, **extra: Any) -> TrialResult:
    """A succeeded record reporting the objective's metric alone, as every synthetic trial writes."""
    return TrialResult(index=index, status="succeeded", params=params, objective=metric,
                       objective_value=value, metrics={metric: value}, **extra)  # fmt: skip


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
    if how == "forged":  # claims to be trial 1, with a score no trial reached
        return succeeded(1, params, metric, 0.999).to_json()
    if how == "list_metrics":
        return json.dumps({"index": index, "status": "succeeded", "params": params, "objective": metric,
                           "objective_value": value, "metrics": [value]}).encode()  # fmt: skip
    # Its real run time: GPU-hour budgets count it.
    return succeeded(index, params, metric, value, wall_time_s=round(_age_s(), 3)).to_json()


def _age_s() -> float:
    """Seconds since this process was started (in its container, or by a LocalLauncher)."""
    # Field 22 of /proc/self/stat, the 20th after the ")" that ends the command name.
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    req = parse_trial_args(argv, CNN)
    how = behaviour(req.index)
    time.sleep(max(0.0, float(how.get("sleep", 0)) - _age_s()))
    if how.get("hang"):
        while True:
            time.sleep(3600)
    if how.get("oom"):
        hog = []
        while True:
            hog.append(b"x" * (64 << 20))  # written, so resident: bytearray(n) pages stay untouched
    if "exit" in how:
        return int(how["exit"])
    store = open_store(req.store)
    data = record(req.index, req.params, req.objective, how.get("write", "ok"))
    if "epochs" in how:
        data = epochs(req.index, req.params, req.objective, how, store) or data
    try:
        store.create(result_object(req.index), data)
    except AlreadyExists:
        return 4
    return 0


def curve(params: Params, epoch: int, epochs: int) -> float:
    """The objective after ``epoch`` of ``epochs``: rising to :func:`objective` at the last."""
    return objective(params) - 0.2 * (epochs - epoch) / epochs


def epochs(index: int, params: Params, metric: str, how: dict[str, Any], store: Store) -> bytes | None:
    """Report ``how["epochs"]`` epochs of ``how["epoch_s"]`` seconds each, as a real trial does; a
    pruned record if the controller asks it to stop (unless ``ignore_stop``), else None."""
    reporter = EpochReporter(store, index, CNN.bounds)
    total = int(how["epochs"])
    for epoch in range(1, total + 1):
        time.sleep(float(how.get("epoch_s", 0)))
        value = curve(params, epoch, total)
        stop = reporter.report(epoch, {metric: value})
        if stop is not None and epoch < total and not how.get("ignore_stop"):
            return TrialResult(index=index, status="pruned", params=params, objective=metric,
                               objective_value=value, metrics={metric: value}, reason=stop.reason,
                               last_epoch=epoch).to_json()  # fmt: skip
    return succeeded(index, params, metric, objective(params), wall_time_s=0.0, last_epoch=total).to_json()


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
