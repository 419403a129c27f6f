"""The CLI's errors: each one is a single line on stderr (a problem JSON under ``--json``) and an exit code."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INCONSISTENT = 3
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70  # a bug in the CLI (sysexits' EX_SOFTWARE); TOKENLEDGER_DEBUG=1 shows the traceback

PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"


class CliError(Exception):
    """A failure to report: one line of text, a problem code and an exit code (default: usage, 2)."""

    exit_code = EXIT_USAGE
    code = "usage_error"
    title = "Usage error"

    def problem(self) -> dict[str, Any]:
        """RFC 9457 problem details for ``--json``."""
        return {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "detail": str(self),
            "code": self.code,
            "exit_code": self.exit_code,
        }


class UsageError(CliError):
    """Bad arguments or input files (exit 2)."""


class ConnectionFailed(CliError):
    """The API could not be reached at all (exit 2: nothing happened)."""

    code = "connection_error"
    title = "Cannot reach the API"


class ApiRefused(CliError):
    """The API answered with an error status (a problem+json body, usually): exit 1."""

    exit_code = EXIT_REFUSED
    title = "Refused"

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        problem = body if isinstance(body, dict) else {}
        self.code = str(problem.get("code") or problem.get("message") or "error")
        detail = str(problem.get("detail") or (body if isinstance(body, str) else ""))
        super().__init__(f"HTTP {status} {self.code}: {detail}".rstrip(": "))

    def problem(self) -> dict[str, Any]:
        body = self.body if isinstance(self.body, dict) else {"detail": str(self)}
        return {"status": self.status, "code": self.code, **body, "exit_code": self.exit_code}


class AwsRefused(CliError):
    """An AWS API (used by commands that go around the HTTP API) answered with an error: exit 1."""

    exit_code = EXIT_REFUSED
    code = "aws_error"
    title = "AWS refused"
