"""Opaque history cursors, bound to the caller and the type filter they were made for.

A cursor is `base64url(mac "." payload)`, where `mac` is HMAC-SHA256 (first 32 hex digits,
128 bits) of the payload under a key only the service holds: the secret named by
`CURSOR_SECRET_NAME` (Secrets Manager, cached per execution environment), or, where none is
configured (unit tests, scripts), a random key made once per process. Nobody can forge a
cursor, and every number decoded from one is bounded before it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Callable

from tokenledger.domain.errors import ValidationFailed

CURSOR_CHARS_MAX = 1024
CURSOR_SEQ_MAX = 10**15  # far above any account's entries, far below what DynamoDB's numbers hold
MAC_CHARS = 32  # hex digits of HMAC-SHA256 kept: 128 bits
KEY_BYTES_MIN = 16

KeyReader = Callable[[], bytes]

_PROCESS_KEY = os.urandom(32)


def process_key() -> bytes:
    """A key of this process alone: cursors from it work only in the environment that made them."""
    return _PROCESS_KEY


def key_from_secret(read: Callable[[], str]) -> KeyReader:
    """The MAC key from a secret string (at least 16 characters; a short one is a deployment error)."""

    def key() -> bytes:
        value = read().encode()
        if len(value) < KEY_BYTES_MIN:
            raise RuntimeError(f"the cursor secret must hold at least {KEY_BYTES_MIN} characters")
        return value

    return key


class CursorCodec:
    def __init__(self, key: KeyReader = process_key) -> None:
        self._key = key

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key(), payload.encode(), hashlib.sha256).hexdigest()[:MAC_CHARS]

    def encode(self, *, caller: str, seq: int, entry_type: str | None) -> str:
        payload = json.dumps({"u": caller, "s": seq, "t": entry_type or ""}, separators=(",", ":"))
        raw = f"{self._mac(payload)}.{payload}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str, *, caller: str, entry_type: str | None) -> int:
        """The seq to continue below. A forged, corrupt, foreign or out-of-range cursor is a 422."""
        invalid = ValidationFailed(
            "cursor is not valid for this request", errors=[{"loc": ["query", "cursor"], "type": "invalid"}]
        )
        if len(cursor) > CURSOR_CHARS_MAX:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            check, payload = raw.split(".", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise invalid from None
        # The MAC first: nothing a forger wrote is parsed.
        if not hmac.compare_digest(check.encode(), self._mac(payload).encode()):
            raise invalid
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            raise invalid from None
        if not isinstance(data, dict):
            raise invalid
        seq = data.get("s")
        if (
            data.get("u") != caller
            or data.get("t") != (entry_type or "")
            or isinstance(seq, bool)
            or not isinstance(seq, int)
            or not 1 <= seq <= CURSOR_SEQ_MAX
        ):
            raise invalid
        return seq


_DEFAULT = CursorCodec()


def encode_cursor(*, caller: str, seq: int, entry_type: str | None) -> str:
    """With this process's key (see `CursorCodec` for a configured one)."""
    return _DEFAULT.encode(caller=caller, seq=seq, entry_type=entry_type)


def decode_cursor(cursor: str, *, caller: str, entry_type: str | None) -> int:
    return _DEFAULT.decode(cursor, caller=caller, entry_type=entry_type)
