"""What a chaos run is made of: the requests clients send, the operations and their answers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WELCOME_GRANT_ACTOR = "system:post-confirmation"  # the actor of the sign-up trigger's grant


@dataclass
class Request:
    method: str
    path: str
    claims: dict[str, Any] | None
    body: Any = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # exact bytes to send (Stripe signs the raw body)
    stripe: bool = False  # a webhook delivery: signed afresh on each try, retried until 2xx
    trigger: dict[str, Any] | None = None  # a Cognito trigger event, invoked on `path` (a function id)
    query: dict[str, str] | None = None


@dataclass
class Op:
    """One logical operation of one client, and what it finally got."""

    client: int
    number: int
    kind: str
    user_id: str
    request: Request
    key: str | None
    amount: int = 0  # the signed amount asked for (0 for reads)
    origin: Op | None = None  # the operation a replay or key reuse repeats
    status: int | None = None  # the definite answer's status; None = never got one
    body: Any = None
    replayed: bool = False
    attempts: int = 0
    transient: Counter[str] = field(default_factory=Counter)  # 5xx, died, contention seen on the way
    stripe: dict[str, Any] | None = None  # what a Stripe event was about (payment, package)
    # time.monotonic() of the first send and of the definite answer (one process: comparable across clients)
    sent_at: float | None = None
    answered_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def definite(self) -> bool:
        return self.status is not None

    def entries(self) -> list[dict[str, Any]]:
        """The entries an acknowledged write answered with."""
        if not self.ok or not isinstance(self.body, dict):
            return []
        if isinstance(self.body.get("entry"), dict):
            return [self.body["entry"]]
        found = self.body.get("entries")
        return list(found) if isinstance(found, list) else []


def user_claims(user_id: str) -> dict[str, Any]:
    return {"sub": user_id}


def admin_claims(client: int) -> dict[str, Any]:
    return {"sub": f"admin-chaos-{client}", "cognito:groups": "[admin support]"}


def error_code(body: Any) -> str | None:
    """The problem+json `code` of an answer's body, if any."""
    return body.get("code") if isinstance(body, dict) else None
