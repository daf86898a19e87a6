"""A live view of one resource type, by label selector, reporting each change.

List, then watch from the list's resourceVersion; a watch that ends resumes
from the last version seen, and a 410 Gone (too old) lists again. Never tight
polling: the API server pushes every change.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from kubetune.kubernetes.api import Obj
from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.informer")
WATCH_TIMEOUT_S = 60  # each watch request ends after this and resumes from its resourceVersion


class Informer:
    """Keeps a live view of one resource type (by label selector) and reports each change."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str,
        on_change: Callable[[str, Obj], None],
    ) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.selector = selector
        self.on_change = on_change
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"informer-{selector}")
        self.synced = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._watch_from(self._list())
                backoff = 0.5
            except ApiException as exc:
                if exc.status != 410 and not self._stop.is_set():
                    log.warning("watch_error", selector=self.selector, status=exc.status, reason=exc.reason)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                # 410 Gone: our resourceVersion is too old; re-list at once.
            except Exception as exc:
                if self._stop.is_set():
                    return  # stop() cut the stream: an ending, not an error
                log.warning("watch_error", selector=self.selector, error=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> str:
        resp = self.list_fn(self.namespace, label_selector=self.selector, _preload_content=False)
        doc = json.loads(resp.data)
        for obj in doc.get("items", []):
            self.on_change("ADDED", obj)
        self.synced.set()
        return str(doc["metadata"]["resourceVersion"])

    def _watch_from(self, rv: str) -> None:
        while not self._stop.is_set():
            self._watch = watch.Watch()
            for event in self._watch.stream(
                self.list_fn,
                self.namespace,
                label_selector=self.selector,
                resource_version=rv,
                timeout_seconds=WATCH_TIMEOUT_S,
                allow_watch_bookmarks=True,
                deserialize=False,
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.on_change(event["type"], obj)
