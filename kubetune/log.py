"""structlog set-up: readable lines on a terminal, JSON lines everywhere else.

Every log line of the project goes through ``get_logger``. Logs go to stderr so
stdout stays free for results (``kubetune best`` prints JSON there).
``KUBETUNE_LOG_FORMAT=json|console`` overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_configured = False


def configure(level: int = logging.INFO) -> None:
    global _configured
    fmt = os.environ.get("KUBETUNE_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer: list[Any] = (
        [structlog.dev.ConsoleRenderer(colors=True), _clear_line]
        if fmt == "console"
        else [structlog.processors.JSONRenderer(sort_keys=True)]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def _clear_line(_logger: Any, _method: str, line: str) -> str:
    # A terminal may show the study's progress line (no newline): wipe it first,
    # the next progress update redraws it below the log line.
    return "\r\033[K" + line


def get_logger(name: str, **bound: Any) -> Any:
    if not _configured:
        configure()
    return structlog.get_logger(name).bind(logger=name, **bound)
