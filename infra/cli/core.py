"""The CLI's core: global options, the command registry, argument types and the one error path.

Every command lives in a module of ``infra/cli/commands/`` (see that package's docstring for
how to add one). The core parses, builds ``args.client``, calls the command, and turns any
failure into one line on stderr (a problem JSON under ``--json``) and an exit code: 2 for a
usage error (bad arguments, an unreadable file, no connection), 1 for a refusal (by the API or
AWS). A traceback is a bug; ``TOKENLEDGER_DEBUG=1`` shows it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from infra import devauth
from infra.cli.client import ADMIN_SUB_DEFAULT, DEFAULT_URL, ApiClient
from infra.cli.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AwsRefused,
    CliError,
    UsageError,
)

URL_ENV_VAR = "TOKENLEDGER_URL"
TOKEN_ENV_VAR = "TOKENLEDGER_TOKEN"
DEBUG_ENV_VAR = "TOKENLEDGER_DEBUG"
USER_CHARS_MAX = devauth.SUB_CHARS_MAX
TOKENS_MAX = 1_000_000_000
COMMANDS_PACKAGE = "infra.cli.commands"

Handler = Callable[[argparse.Namespace], int | None]


# ---------------------------------------------------------------- argument types (their messages are shown as is)
def user_id(text: str) -> str:
    """A user id argument: not empty, no spaces (the API checks the rest)."""
    if not text or not text.strip():
        raise argparse.ArgumentTypeError("a user id cannot be empty")
    if len(text) > USER_CHARS_MAX or re.search(r"\s", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a user id (1..{USER_CHARS_MAX} characters, no spaces)")
    return text


def text_value(text: str) -> str:
    """A free text argument such as a reason: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("cannot be empty")
    return text


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An integer argument within ``low..high``, with a message that names the range."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low}..{high}")
        return value

    return parse


tokens = whole_number(1, TOKENS_MAX)
signed_tokens = whole_number(-TOKENS_MAX, TOKENS_MAX)


# ---------------------------------------------------------------- parsing
class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (one line, reported by ``main``) instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def global_options(*, defaults: bool) -> argparse.ArgumentParser:
    """--url, --token, --as, --json: accepted before or after the command.

    The command's copy has no defaults (``SUPPRESS``), so a value given before the command is
    kept unless the same option is given again after it.
    """
    parent = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parent.add_argument(
        "--url",
        default=default(None),
        metavar="URL",
        help=f"API base URL (env {URL_ENV_VAR}; default {DEFAULT_URL}, what `make run` serves)",
    )
    parent.add_argument(
        "--token",
        default=default(None),
        metavar="JWT",
        help=f"a real bearer token (env {TOKEN_ENV_VAR}); it says who calls, so user routes take no USER."
        " Default: sign a local development token",
    )
    parent.add_argument(
        "--as",
        dest="admin_sub",
        type=user_id,
        default=default(None),
        metavar="ADMIN",
        help=f"the admin's user id on admin routes, with development tokens (default {ADMIN_SUB_DEFAULT})",
    )
    parent.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON (errors: a problem JSON on stderr)"
    )
    return parent


class Commands:
    """What a command module's ``register(commands)`` gets: ``add_parser`` as argparse's, with the global options."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self._common = [global_options(defaults=False)]

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, parents=[*self._common, *kwargs.pop("parents", [])], **kwargs
        )
        return parser

    def add(self, name: str, func: Handler, *, help: str, **kwargs: Any) -> argparse.ArgumentParser:  # noqa: A002
        """The usual case: a command calling ``func(args)``, which returns an exit code (None: 0)."""
        parser = self.add_parser(name, help=help, **kwargs)
        parser.set_defaults(func=func)
        return parser

    def group(self, parser: argparse.ArgumentParser, *, dest: str, metavar: str = "VIEW") -> Commands:
        """Sub-commands of a command (``reports latest``), with the global options too."""
        return Commands(parser.add_subparsers(dest=dest, metavar=metavar, parser_class=Parser))


def command_modules() -> list[str]:
    """Every module of ``infra/cli/commands/`` not starting with ``_``, by name."""
    package = importlib.import_module(COMMANDS_PACKAGE)
    return sorted(
        f"{COMMANDS_PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tokenledger",
        description="Operate a tokenledger API: the local stack (`make run`) or any deployment.",
        parents=[global_options(defaults=True)],
        epilog="Exit codes: 0 done, 1 refused by the API or AWS, 2 usage or connection error, "
        "3 an audit found an inconsistent account. Walk-through: docs/local.md",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    commands = Commands(sub)
    for name in command_modules():
        importlib.import_module(name).register(commands)
    return parser


# ---------------------------------------------------------------- the acting user
def acting_user(args: argparse.Namespace) -> str | None:
    """The USER of a user route: signs a development token, unless a real token says who calls.

    Both at once is a usage error: the token would silently win.
    """
    user: str | None = getattr(args, "user", None)
    if args.token:
        if user:
            raise UsageError(
                f"{args.token_source} already says who is calling; leave out the user {user!r}"
                f" (or drop {args.token_source} to sign a development token for {user!r})"
            )
        return None
    if not user:
        raise UsageError("name the user (or pass --token with a real token)")
    return user


def add_user_argument(parser: argparse.ArgumentParser) -> None:
    """The optional USER of a user route (see ``acting_user``)."""
    parser.add_argument(
        "user", nargs="?", type=user_id, help="who calls (a development token is signed); leave out with --token"
    )


# ---------------------------------------------------------------- running
def _prepare(args: argparse.Namespace) -> None:
    env_token = os.environ.get(TOKEN_ENV_VAR) or None
    args.token_source = "--token" if args.token else TOKEN_ENV_VAR
    if args.token is not None and not args.token.strip():
        raise UsageError("--token cannot be empty")
    args.token = args.token or env_token
    if args.token and args.admin_sub:
        raise UsageError(f"--as names the admin of development tokens; {args.token_source} already says who calls")
    args.url = args.url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    args.client = ApiClient(args.url, token=args.token, admin_sub=args.admin_sub or ADMIN_SUB_DEFAULT)


def main(argv: Iterable[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments  # until parsed: a usage error under --json is JSON too
    try:
        args = build_parser().parse_args(arguments)
        as_json = bool(args.json)
        _prepare(args)
        return int(args.func(args) or EXIT_OK)
    except SystemExit as done:  # --help
        return EXIT_OK if done.code is None else done.code if isinstance(done.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if os.environ.get(DEBUG_ENV_VAR) and not isinstance(error, CliError):
            raise
        return report(as_cli_error(error), as_json=as_json)


def as_cli_error(error: Exception) -> CliError:
    """Any failure as the one kind the CLI reports."""
    if isinstance(error, CliError):
        return error
    if isinstance(error, devauth.InvalidToken):
        return UsageError(str(error))
    if isinstance(error, OSError) and error.filename is not None:
        return UsageError(f"cannot read {error.filename}: {error.strerror or error}")
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        if isinstance(error, botocore.ClientError):
            details = error.response.get("Error", {})
            operation = getattr(error, "operation_name", "the call")
            return AwsRefused(f"AWS refused {operation}: {details.get('Code')}: {details.get('Message')}")
        if isinstance(error, botocore.BotoCoreError):
            return UsageError(f"AWS: {error}")
    internal = CliError(
        f"unexpected {type(error).__name__}: {error} (a bug in tokenledger; {DEBUG_ENV_VAR}=1 shows the traceback)"
    )
    internal.exit_code = EXIT_INTERNAL
    internal.code = "internal_error"
    return internal


def report(error: CliError, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(error.problem(), sort_keys=True), file=sys.stderr)
    else:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
    return error.exit_code
