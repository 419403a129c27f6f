"""Development identity: ``token`` signs a local JWT (the local stack trusts it; AWS does not)."""

from __future__ import annotations

import argparse

from infra import devauth
from infra.cli.client import ADMIN_GROUP
from infra.cli.core import Commands, user_id, whole_number
from infra.cli.errors import EXIT_OK
from infra.cli.output import emit_json


def register(commands: Commands) -> None:
    p = commands.add("token", token, help="sign a development JWT for a user (local stack only)")
    p.add_argument("user", type=user_id)
    p.add_argument("--admin", action="store_true", help="put the user in the admin group")
    p.add_argument("--group", action="append", type=user_id, help="another cognito group (repeatable)")
    p.add_argument(
        "--ttl",
        type=whole_number(1, devauth.TOKEN_TTL_S_MAX),
        default=devauth.TOKEN_TTL_S_DEFAULT,
        help=f"lifetime in seconds (default {devauth.TOKEN_TTL_S_DEFAULT})",
    )


def token(args: argparse.Namespace) -> int:
    groups = list(args.group or [])
    if args.admin:
        groups.append(ADMIN_GROUP)
    minted = devauth.mint(args.user, groups, ttl_s=args.ttl)
    if args.json:
        claims = devauth.verify(minted)
        emit_json({"token": minted, "claims": claims, "gateway_claims": devauth.gateway_claims(claims)})
    else:
        print(minted)
    return EXIT_OK
