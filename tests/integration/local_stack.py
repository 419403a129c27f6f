"""Start the real local stack (`python -m infra.local`, as `make run` does) for a test module."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.dynamodb_local import find_free_port
from infra.template import REPO_ROOT

STARTUP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15


@dataclass
class RunningStack:
    url: str
    devkey_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def http(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None, timeout: float = 30
) -> tuple[int, dict[str, str], Any]:
    """One plain HTTP call: (status, lower-cased headers, JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"content-type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw_headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, raw_headers, payload = error.code, error.headers, error.read()
    lowered = {k.lower(): v for k, v in raw_headers.items()}
    text = payload.decode("utf-8", "replace")
    parsed: Any = json.loads(text) if text and "json" in lowered.get("content-type", "") else text
    return status, lowered, parsed


@contextlib.contextmanager
def local_stack(*args: str, devkey_dir: Path) -> Iterator[RunningStack]:
    """`python -m infra.local --port <free> --quiet *args` in a subprocess, stopped afterwards."""
    port = find_free_port()
    env = {**os.environ, "TOKENLEDGER_DEVKEY_DIR": str(devkey_dir), "PYTHONUNBUFFERED": "1"}
    with tempfile.NamedTemporaryFile("wb", prefix="tokenledger-local-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "--port", str(port), "--quiet", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack = RunningStack(f"http://127.0.0.1:{port}", devkey_dir, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the local stack exited with {process.returncode}:\n{stack.log()[-3000:]}")
            with contextlib.suppress(OSError):
                if http("GET", stack.url + "/healthz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local stack did not answer in {STARTUP_TIMEOUT_S} s:\n{stack.log()[-3000:]}")
            time.sleep(0.2)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_path.unlink(missing_ok=True)
