"""A Google Cloud Storage bucket, through the official client.

Write-once is enforced by the server: ``if_generation_match=0`` makes the
upload fail with 412 when the object exists. Transient errors (429, 5xx,
connection resets, timeouts) are retried with exponential backoff and jitter
by the client's retry policy; permanent ones (403, 404) fail at once.
Set ``STORAGE_EMULATOR_HOST`` to talk to an emulator with anonymous credentials.
"""

from __future__ import annotations

import mimetypes
import os

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from kubetune.store._base import AlreadyExists, NotFound, StoreError


class GCSStore:
    # Bounded: a dead network surfaces as an error in about a minute, not never.
    RETRY: Retry = DEFAULT_RETRY.with_timeout(60.0)
    TIMEOUT = (5.0, 60.0)  # connect, read (seconds)

    def __init__(self, bucket: storage.Bucket, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def open(cls, uri: str) -> GCSStore:
        bucket_name, _, prefix = uri.removeprefix("gs://").partition("/")
        if not bucket_name:
            raise StoreError(f"store {uri}: missing bucket name (use gs://bucket/prefix)")
        prefix = prefix.strip("/")
        store = cls(_client(uri).bucket(bucket_name), prefix + "/" if prefix else "")
        store._check()
        return store

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket.name}/{self.prefix}".rstrip("/")

    def _check(self) -> None:
        # One cheap call that needs the same permission as every later read.
        try:
            list(
                self.bucket.list_blobs(
                    prefix=self.prefix, max_results=1, timeout=self.TIMEOUT, retry=self.RETRY
                )
            )
        except gexc.NotFound:
            raise StoreError(f"store {self.uri}: bucket {self.bucket.name!r} does not exist") from None
        except gexc.Forbidden as exc:
            raise StoreError(f"store {self.uri}: permission denied ({_reason(exc)})") from None
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"store {self.uri}: {_reason(exc)}") from None

    def create(self, name: str, data: bytes) -> None:
        blob = self.bucket.blob(self.prefix + name)
        try:
            blob.upload_from_string(
                data, if_generation_match=0, timeout=self.TIMEOUT, retry=self.RETRY, content_type=_type(name)
            )
        except gexc.PreconditionFailed:
            # A retried upload whose first attempt landed (its response was lost
            # to a reset or a timeout) meets its own object: that is success.
            if self._holds(name, data):
                return
            raise AlreadyExists(f"{self.uri}/{name}: already written") from None
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"{self.uri}/{name}: write failed ({_reason(exc)})") from None

    def _holds(self, name: str, data: bytes) -> bool:
        try:
            return self.get(name) == data
        except NotFound:
            return False

    def put(self, name: str, data: bytes) -> None:
        blob = self.bucket.blob(self.prefix + name)
        try:
            # An unconditional overwrite is idempotent, so retrying it is safe.
            blob.upload_from_string(data, timeout=self.TIMEOUT, retry=self.RETRY, content_type=_type(name))
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"{self.uri}/{name}: write failed ({_reason(exc)})") from None

    def get(self, name: str) -> bytes:
        try:
            data: bytes = self.bucket.blob(self.prefix + name).download_as_bytes(
                timeout=self.TIMEOUT, retry=self.RETRY
            )
        except gexc.NotFound:
            raise NotFound(f"{self.uri}/{name}: not found") from None
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"{self.uri}/{name}: read failed ({_reason(exc)})") from None
        return data

    def list(self, prefix: str = "") -> list[str]:
        try:
            blobs = self.bucket.list_blobs(
                prefix=self.prefix + prefix, timeout=self.TIMEOUT, retry=self.RETRY
            )
            return sorted(b.name[len(self.prefix) :] for b in blobs)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"{self.uri}: list failed ({_reason(exc)})") from None


def _client(uri: str) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="kubetune-emulator", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    try:
        return storage.Client()
    except DefaultCredentialsError:
        raise StoreError(
            f"store {uri}: no Google Cloud credentials found "
            "(use Workload Identity in the cluster, or `gcloud auth application-default login`)"
        ) from None


def _type(name: str) -> str:
    # Served with its real type, a report.html or plot opens in the browser from the bucket.
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _reason(exc: gexc.GoogleAPICallError) -> str:
    return f"HTTP {exc.code}: {exc.message}" if exc.code else str(exc.message)
