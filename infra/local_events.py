"""Outbound events in the local stack: the stream consumer running, and ``GET /_local/events`` to follow the bus.

The template's stream event source mappings run in the background (``infra.streams``): on
DynamoDB Local from its real DynamoDB Streams, on moto from moto's stream records. The
publisher function puts events on the template's bus in moto, tapped by ``infra.bus``.
``tokenledger events --follow`` long-polls::

    GET /_local/events?after=<position>&wait=<seconds>&user_id=<id>&detail_type=<type>
    -> {"events": [<EventBridge envelope>...], "next": <position>}

``after=now`` starts at the end (only what comes next); no ``after``: every event kept.
Admin only (a development token in the ``admin`` group): events carry every user's entries.
Not an API route: it exists only in the local stack (docs/events.md).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from infra import devauth
from infra.bus import BUS_LOG, install_bus_tap
from infra.streams import StreamMapping, start_mappings
from infra.template import Stack

EVENTS_PATH = "/_local/events"
WAIT_S_MAX = 20.0
FILTER_CHARS_MAX = 128
ADMIN_GROUP = "admin"


class LocalEvents:
    """The stack's stream consumers and its followable bus."""

    def __init__(self, stack: Stack, engine: str) -> None:
        self.stack = stack
        self.engine = engine
        self.mappings: list[StreamMapping] = []
        self.followable = engine != "endpoint"  # the tap sees moto's bus only

    def start(self) -> LocalEvents:
        if self.followable:
            install_bus_tap()
        reader_engine = "moto" if self.engine == "moto" else "streams-api"
        self.mappings = start_mappings(self.stack, reader_engine, log=lambda line: print(line, file=sys.stderr))
        return self

    def stop(self) -> None:
        for mapping in self.mappings:
            mapping.stop()

    def respond(self, query: Mapping[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(status, body) of `GET /_local/events`; problems as (status, problem fields)."""
        refused = self._refusal(authorization)
        if refused is not None:
            return refused
        problem = _query_problem(query)
        if problem is not None:
            return 422, {"code": "validation_error", "detail": problem}
        raw_after = query.get("after", "0")
        after = BUS_LOG.end if raw_after == "now" else int(raw_after)
        wait = min(float(query.get("wait", "0")), WAIT_S_MAX)
        user = query.get("user_id")
        detail_type = query.get("detail_type")

        def accept(event: dict[str, Any]) -> bool:
            if detail_type is not None and event.get("detail-type") != detail_type:
                return False
            return user is None or (event.get("detail") or {}).get("user_id") == user

        events, end = BUS_LOG.since(after, wait_s=wait, accept=accept)
        return 200, {"events": events, "next": end}

    def _refusal(self, authorization: str | None) -> tuple[int, dict[str, Any]] | None:
        """Why this caller may not follow the bus (401, 403, or 404 when not followable), if so."""
        try:
            claims = devauth.verify(devauth.bearer_token(authorization))
        except devauth.InvalidToken as refused:
            return 401, {"code": "unauthorized", "detail": str(refused)}
        if ADMIN_GROUP not in (claims.get(devauth.GROUPS_CLAIM) or []):
            return 403, {"code": "forbidden", "detail": "following the bus is for the admin group"}
        if not self.followable:
            return 404, {"code": "not_found", "detail": "the bus of --engine endpoint is not followable here"}
        return None


def _query_problem(query: Mapping[str, str]) -> str | None:
    """What is wrong with the query (`after`, `wait`, the filters), if anything."""
    raw_after = query.get("after", "0")
    if raw_after != "now" and not re.fullmatch(r"[0-9]{1,12}", raw_after):
        return "after must be a position (0..) or now"
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3})?", query.get("wait", "0")):
        return f"wait must be seconds, 0..{WAIT_S_MAX:.0f}"
    for name in ("user_id", "detail_type"):
        value = query.get(name)
        if value is not None and not 0 < len(value) <= FILTER_CHARS_MAX:
            return f"{name} must be 1..{FILTER_CHARS_MAX} characters"
    return None
