"""``tokenledger``: the ops command line, over HTTP, against the local stack or any deployment.

    tokenledger token alice                 # a development JWT (``--admin`` for the admin group)
    tokenledger balance alice
    tokenledger history alice --limit 50
    tokenledger commit alice 25 --prediction p-9
    tokenledger grant alice 100 --reason "support ticket 42"
    tokenledger stripe-purchase alice --package starter
    tokenledger audit alice bob carol       # or: --file ids.txt (``-`` for stdin)

``--url`` (or ``TOKENLEDGER_URL``) picks the API, default ``http://127.0.0.1:3000`` (``make run``).
Against the local stack the CLI signs its own development tokens; against a deployment pass
a real one with ``--token`` (or ``TOKENLEDGER_TOKEN``), and leave out the USER of user routes.
Tables for people by default, ``--json`` for scripts; long work shows a progress bar on a terminal.

Exit codes: 0 done, 1 the API (or AWS) refused, 2 usage or connection error, 3 an audit found an
inconsistent account. Every error is one line on stderr (a problem JSON under ``--json``).

Layout: ``core`` (global options, the registry, the error path), ``client`` (HTTP),
``errors``, ``output``, and ``commands/`` with one module per command group; its docstring
says how to add a command. Stripe events are built and signed by ``infra.stripe_events``.
"""

from __future__ import annotations

from infra.cli.client import DEFAULT_URL, ApiClient, Reply, new_key
from infra.cli.core import build_parser, main
from infra.cli.errors import (
    EXIT_INCONSISTENT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ApiRefused,
    CliError,
    ConnectionFailed,
    UsageError,
)
from infra.cli.output import Progress, emit_json, table
from infra.stripe_events import checkout_completed_event, local_catalog, stripe_signature

__all__ = [
    "DEFAULT_URL",
    "EXIT_INCONSISTENT",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "ApiClient",
    "ApiRefused",
    "CliError",
    "ConnectionFailed",
    "Progress",
    "Reply",
    "UsageError",
    "build_parser",
    "checkout_completed_event",
    "emit_json",
    "local_catalog",
    "main",
    "new_key",
    "stripe_signature",
    "table",
]
