"""The chaos run's world: `infra.world.local_world` (the template's tables, buckets, secrets, buses
and queues on moto, with DynamoDB on moto or DynamoDB Local) with what a run adds to it: a welcome
grant at sign-up and a seeded Stripe signing secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from infra.template import Stack
from infra.world import environment_variable, local_environment, local_world, secret_named_by

CHAOS_WELCOME_GRANT_TOKENS = 25  # the template's WelcomeGrantTokens for a run (default 0: no grant)


@contextlib.contextmanager
def world(engine: str, stack: Stack, secrets: dict[str, str]) -> Iterator[Any]:
    """The template's world with DynamoDB on `engine`; yields a DynamoDB client."""
    # What the handlers read, unless the caller set it (chaos's own handlers log nothing by default).
    for name, value in local_environment(stack, POWERTOOLS_LOG_LEVEL="CRITICAL").items():
        os.environ.setdefault(name, value)
    # The sign-up trigger grants welcome tokens in this world (the template's default is none).
    with (
        environment_variable("WELCOME_GRANT_TOKENS", str(CHAOS_WELCOME_GRANT_TOKENS)),
        local_world(stack, engine, secrets=secrets) as built,
    ):
        yield built.dynamodb


def stripe_secret_values(stack: Stack, seed: int) -> tuple[dict[str, str], str | None]:
    """A webhook signing secret for the secret the template hands to the Stripe function, if any."""
    logical_id = secret_named_by(stack, "STRIPE_WEBHOOK_SECRET_NAME")
    if logical_id is None:
        return {}, None
    secret = "whsec_" + base64.b32encode(hashlib.sha256(f"chaos:{seed}".encode()).digest()).decode()[:32]
    return {logical_id: secret}, secret
