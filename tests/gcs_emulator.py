"""A real GCS emulator: fake-gcs-server, which enforces generation preconditions.

It listens on one local address: loopback by default, or the test node's
bridge gateway, so pods reach it too."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from tests.cluster.proc import Service, free_port


class FakeGCS(Service):
    def __init__(self, binary: Path, workdir: Path, address: str = "127.0.0.1") -> None:
        self.binary = binary
        self.workdir = workdir
        self.address = address
        self.port = free_port()
        self.host = f"http://{address}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the file descriptor.
        with open(self.workdir / "fake-gcs-server.log", "wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(self.binary),
                    "-scheme",
                    "http",
                    "-host",
                    self.address,
                    "-port",
                    str(self.port),
                    "-backend",
                    "memory",
                    "-public-host",
                    f"{self.address}:{self.port}",
                    "-external-url",
                    self.host,
                    "-log-level",
                    "warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited; see {self.workdir}/fake-gcs-server.log")
            try:
                urllib.request.urlopen(f"{self.host}/storage/v1/b", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("fake-gcs-server did not become ready in 30 s")

    def create_bucket(self, name: str) -> None:
        req = urllib.request.Request(
            f"{self.host}/storage/v1/b",
            data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=5).close()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
