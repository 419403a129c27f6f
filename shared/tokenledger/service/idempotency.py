"""Idempotency keys: scoped to caller and route, bound to a hash of the request."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from typing import Any

from tokenledger.domain.errors import IdempotencyKeyReused, ValidationFailed
from tokenledger.service.ports import StoredResponse

IDEMPOTENCY_KEY_CHARS_MAX = 255
IDEMPOTENCY_TTL_S = 8 * 24 * 3600  # the contract promises >= 7 days
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def check_idempotency_key(key: str | None) -> str:
    if key is None or key == "":
        raise ValidationFailed(
            "the Idempotency-Key header is required on this route",
            errors=[{"loc": ["header", "Idempotency-Key"], "type": "missing"}],
        )
    if len(key) > IDEMPOTENCY_KEY_CHARS_MAX or not set(key) <= _PRINTABLE:
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII characters",
            errors=[{"loc": ["header", "Idempotency-Key"], "type": "invalid"}],
        )
    return key


def request_hash(payload: Any) -> str:
    """A stable hash of what was asked (path parameters and the parsed body)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    """One use of a key: who, on which route, with what request."""

    caller: str
    route: str
    key: str
    request_hash: str

    @property
    def pk(self) -> str:
        return f"idem|{self.route}|{self.caller}|{self.key}"

    def check_replay(self, stored: StoredResponse) -> StoredResponse:
        """The stored answer if it was for this same request, else `idempotency_key_reused`."""
        if stored.request_hash != self.request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request on this route")
        return stored
