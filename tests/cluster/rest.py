"""A minimal JSON REST client for the kube-apiserver, built on urllib3.

The reliability suites read and write whole objects as plain dicts rather than
the generated `kubernetes` models, whose serialisation (datetime formats,
default patch content type) gets in the way of checking raw API behaviour.
Credentials come from a kubeconfig that references files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
import yaml

Json = dict[str, Any]

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """Non-2xx answer from the apiserver."""

    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


class Rest:
    """Thread-safe (urllib3 pools are) JSON client for one apiserver."""

    def __init__(self, kubeconfig: Path, pool_maxsize: int = 16, timeout_s: float = 30.0) -> None:
        doc = yaml.safe_load(kubeconfig.read_text())
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        self.server: str = cluster["server"].rstrip("/")
        self.ca_file = Path(cluster["certificate-authority"])
        self._timeout = urllib3.Timeout(connect=10.0, read=timeout_s)
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_maxsize,
            ca_certs=str(self.ca_file),
            cert_file=user["client-certificate"],
            key_file=user["client-key"],
            cert_reqs="CERT_REQUIRED",
            retries=False,
        )

    def _url(self, path: str, query: Mapping[str, str | int | bool] | None) -> str:
        if not query:
            return self.server + path
        q = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items()}
        return f"{self.server}{path}?{urlencode(q)}"

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        resp = self._pool.request(
            method, self._url(path, query), body=data, headers=headers, timeout=self._timeout
        )
        text = resp.data.decode(errors="replace")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, text, method, path)
        result: Json = json.loads(text) if text else {}
        return result

    def get(self, path: str, **query: str | int | bool) -> Json:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body)

    def put(self, path: str, body: Json) -> Json:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Json, content_type: str = STRATEGIC_MERGE) -> Json:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body)

    def watch(self, path: str, query: Mapping[str, str | int | bool], timeout_s: int) -> Iterator[Json]:
        """Yield watch events until the server closes the stream (after timeout_s).

        Raises WatchExpired on 410 Gone (as HTTP status or as an ERROR event).
        """
        q = {**query, "watch": True, "timeoutSeconds": timeout_s, "allowWatchBookmarks": True}
        resp = self._pool.request(
            "GET",
            self._url(path, q),
            headers={"Accept": "application/json"},
            preload_content=False,
            # The server ends the stream after timeout_s; the read timeout
            # only guards against a wedged connection.
            timeout=urllib3.Timeout(connect=10.0, read=timeout_s + 30.0),
        )
        try:
            if resp.status == 410:
                raise WatchExpired(path)
            if resp.status != 200:
                raise ApiError(resp.status, resp.read().decode(errors="replace"), "WATCH", path)
            for line in resp:
                if not line.strip():
                    continue
                event: Json = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise WatchExpired(path)
                    raise ApiError(int(status.get("code", 500)), json.dumps(status), "WATCH", path)
                yield event
        finally:
            resp.release_conn()

    def close(self) -> None:
        self._pool.clear()
