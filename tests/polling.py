"""Waiting in tests: one bounded polling loop for every "until this is true"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout_s: float,
    interval_s: float = 0.25,
    on_timeout: Callable[[], str] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; bounded by ``timeout_s``.

    Probe exceptions are treated as "not yet" (the last one is reported), since
    most probes talk to a server that is still starting; those of a ``fatal``
    type (e.g. "the process died") end the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except fatal:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout is not None else ""
            msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
            if last_error is not None:
                msg += f" (last error: {last_error!r})"
            if detail:
                msg += f"\n{detail}"
            raise TimeoutError(msg) from last_error
        time.sleep(interval_s)
