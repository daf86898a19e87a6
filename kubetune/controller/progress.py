"""Live progress of a study: one rewritten line on a terminal, JSON log lines elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO

from kubetune.controller.leaderboard import best_of
from kubetune.controller.study import Study
from kubetune.log import get_logger


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.log = get_logger("kubetune.progress")
        self._last: tuple[int, int, int] | None = None

    def __call__(self, study: Study) -> None:
        h = study.history
        done, failed, running = len(h.ordered_results()), h.failed, len(study.launcher.running())
        best = best_of(study.spec, h.ordered_results())
        best_text = f"{best.objective_value:.4f} (trial {best.index})" if best else "-"
        if self.tty:
            line = (
                f"[{done}/{study.spec.budget.max_trials}] running {running}  failed {failed}  "
                f"best {study.spec.objective.metric} {best_text}  ETA {_duration(study.eta_s())}"
            )
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif (done, failed, running) != self._last:
            self.log.info(
                "progress",
                done=done,
                total=study.spec.budget.max_trials,
                running=running,
                failed=failed,
                best=best.objective_value if best else None,
                eta_s=study.eta_s(),
            )
        self._last = (done, failed, running)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
