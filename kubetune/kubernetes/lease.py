"""One controller per study: a coordination.k8s.io Lease, the way client-go elects leaders.

A new controller pod can start while the old one is still terminating. Only
the Lease holder launches trials; the other waits, and takes over once the
holder stops renewing. A holder that cannot renew in time exits at once:
acting on a study it may no longer own is worse than a restart.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.log import get_logger

log = get_logger("kubetune.kubernetes.lease")


def _now() -> datetime:
    return datetime.now(UTC)


class Lease:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        duration_s: int = 15,
    ) -> None:
        self.api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = (
            identity or os.environ.get("KUBETUNE_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        self.duration_s = duration_s
        self._stop = threading.Event()

    def acquire(self, poll_s: float = 2.0) -> None:
        """Block until this process holds the lease."""
        announced = False
        while not self.try_acquire():
            if not announced:
                log.info("lease_waiting", lease=self.name, identity=self.identity)
                announced = True
            time.sleep(poll_s)
        log.info("lease_acquired", lease=self.name, identity=self.identity)

    def try_acquire(self) -> bool:
        now = _now()
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or (now - renewed).total_seconds() > (spec.lease_duration_seconds or 0)
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = self.duration_s
        spec.renew_time = now
        try:
            # resourceVersion in the body makes this a compare-and-swap.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self, now: datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.duration_s,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def keep_renewing(self) -> None:
        """Renew in the background; exit the process if the lease is lost."""
        threading.Thread(target=self._renew_loop, daemon=True, name="lease-renewer").start()

    def _renew_loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.duration_s / 3):
            try:
                if self.try_acquire():
                    last_ok = time.monotonic()
                    continue
                log.error("lease_lost", lease=self.name, identity=self.identity)
            except Exception as exc:
                log.warning("lease_renew_failed", lease=self.name, error=str(exc))
                if time.monotonic() - last_ok < self.duration_s:
                    continue
            os._exit(1)  # Another controller may act now; the Job restarts this one.

    def release(self) -> None:
        self._stop.set()
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("lease_release_failed", lease=self.name, status=exc.status)
