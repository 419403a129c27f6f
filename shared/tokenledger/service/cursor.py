"""Opaque history cursors, bound to the caller and the type filter they were made for."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from tokenledger.domain.errors import ValidationFailed

_CHECK_CHARS = 12


def _check(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:_CHECK_CHARS]


def encode_cursor(*, caller: str, seq: int, entry_type: str | None) -> str:
    payload = json.dumps({"u": caller, "s": seq, "t": entry_type or ""}, separators=(",", ":"))
    raw = f"{_check(payload)}.{payload}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, caller: str, entry_type: str | None) -> int:
    """The seq to continue below. A forged, corrupt or foreign cursor is a 422."""
    invalid = ValidationFailed(
        "cursor is not valid for this request", errors=[{"loc": ["query", "cursor"], "type": "invalid"}]
    )
    if len(cursor) > 1024:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        check, payload = raw.split(".", 1)
        data = json.loads(payload)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if check != _check(payload) or not isinstance(data, dict):
        raise invalid
    seq = data.get("s")
    if (
        data.get("u") != caller
        or data.get("t") != (entry_type or "")
        or isinstance(seq, bool)
        or not isinstance(seq, int)
        or seq < 1
    ):
        raise invalid
    return seq
