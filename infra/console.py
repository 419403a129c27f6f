"""The web console (``console/``) under ``make run``: static files at ``/console``, plus dev-only helpers.

The console is plain static files (HTML, CSS, ES modules), no build step. Its one third-party
piece, the chart library uPlot, comes from the npm package ``uplot`` (pinned, sha256-checked,
fetched once into ``$TOKENLEDGER_CACHE_DIR/uplot/<version>`` like Swagger UI) and is served at
``/console/vendor/``: no CDN at run time. In production the same files sit in an S3 bucket
behind CloudFront (template.yaml, ``EnableConsole``; docs/console.md).

Served only by the local stack, never deployed (answered from loopback clients only):

- ``GET /console/config.json``: ``{"mode": "dev", ...}``: sign in with the user picker;
- ``POST /console/dev/token`` ``{"user", "admin"}``: a development JWT (``infra.devauth``);
- ``POST /console/dev/reconcile``: one reconciliation run now, as the schedule would start it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra import devauth
from infra.npm import NpmFetchFailed, Pinned, install_pinned
from infra.template import REPO_ROOT

PREFIX = "/console"
CONSOLE_DIR = REPO_ROOT / "console"
NPM_PACKAGE = "uplot"
NPM_VERSION = "1.6.32"
# sha256 of `npm pack uplot@1.6.32` (the registry's sha1 is c800a63b432bad692d6d746f44f0882aa73a49ae).
TARBALL_SHA256 = "4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d"
NPM_TIMEOUT_S = 300
# The files /console/vendor/ serves (and nothing else from the package).
VENDOR_ASSETS = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Everything from this server: scripts, styles, API calls. Inline styles set by script (uPlot) are CSSOM, allowed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
DEV_USERS = ("alice", "bob", "carol", "ops")
DEV_BODY_BYTES_MAX = 4096
LOW_BALANCE_TOKENS_DEFAULT = 100
_SAFE_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)?(/[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)?)*")
DEV_USER = re.compile(r"[A-Za-z0-9_.@-]{1,128}")

Reply = tuple[int, bytes, str, dict[str, str]]


# ---------------------------------------------------------------- the chart library
def _dist_folder(copy: Path) -> Path | None:
    """uPlot's dist folder, if it holds every file /console/vendor/ serves."""
    dist = copy / "package" / "dist"
    return dist if all((dist / name).is_file() for name in VENDOR_ASSETS) else None


UPLOT = Pinned(NPM_PACKAGE, NPM_VERSION, TARBALL_SHA256, "uplot", _dist_folder, timeout_s=NPM_TIMEOUT_S)


# ---------------------------------------------------------------- serving
def _json(status: int, body: Any, content_type: str | None = None) -> Reply:
    problem = status >= 400 and content_type is None
    data = json.dumps(body).encode()
    return status, data, content_type or ("application/problem+json" if problem else "application/json"), {}


def _problem(status: int, code: str, detail: str) -> Reply:
    from http import HTTPStatus

    body = {"type": f"https://tokenledger.dev/problems/{code}", "title": HTTPStatus(status).phrase}
    return _json(status, {**body, "status": status, "detail": detail, "code": code})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class ConsoleSite:
    """Answers ``/console`` requests for the local stack (``infra.local``)."""

    def __init__(self, local: Any, *, root: Path = CONSOLE_DIR) -> None:
        self.local = local
        self.root = root
        self.vendor_dir: Path | None = None
        self.vendor_error: str | None = None
        try:
            self.vendor_dir = install_pinned(UPLOT)
        except NpmFetchFailed as error:
            self.vendor_error = str(error)

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def respond(self, method: str, path: str, raw: bytes, client_host: str) -> Reply:
        if path in (PREFIX, PREFIX + "/index.html"):
            return 302, b"", "text/plain", {"location": PREFIX + "/"}
        rest = path.removeprefix(PREFIX + "/")
        if rest.startswith("dev/") or rest == "config.json":
            return self._dev(method, rest, raw, client_host)
        if method not in ("GET", "HEAD"):
            return _problem(405, "method_not_allowed", "the console's files are read-only")
        if rest.startswith("vendor/"):
            return self._vendor(rest.removeprefix("vendor/"))
        return self._static(rest or "index.html")

    def _dev(self, method: str, rest: str, raw: bytes, client_host: str) -> Reply:
        """The development helpers (`config.json`, `dev/...`): for this machine only."""
        if not is_loopback(client_host):
            return _problem(403, "forbidden", "the console's development helpers answer this machine only")
        helpers: dict[tuple[str, str], Callable[[], Reply]] = {
            ("config.json", "GET"): lambda: _json(200, self.config()),
            ("config.json", "HEAD"): lambda: _json(200, self.config()),
            ("dev/token", "POST"): lambda: self._dev_token(raw),
            ("dev/reconcile", "POST"): self._dev_reconcile,
        }
        helper = helpers.get((rest, method))
        if helper is None:
            known = rest in ("config.json", "dev/token", "dev/reconcile")
            return _problem(405 if known else 404, "not_found", PREFIX + "/" + rest)
        return helper()

    def config(self) -> dict[str, Any]:
        parameters = self.local.stack.template.get("Parameters", {})
        low = parameters.get("LowBalanceTokens", {}).get("Default", LOW_BALANCE_TOKENS_DEFAULT)
        return {
            "mode": "dev",
            "api_base": "",
            "low_balance_tokens": int(low),
            "dev_users": list(DEV_USERS),
            "chart": self.vendor_dir is not None,
            "dev_reconcile": True,
        }

    def _static(self, rest: str) -> Reply:
        if not _SAFE_PATH.fullmatch(rest):
            return _problem(404, "not_found", "no such file")
        target = self.root / rest
        content_type = CONTENT_TYPES.get(target.suffix)
        if content_type is None or not target.is_file():
            return _problem(404, "not_found", "no such file")
        headers = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}
        if target.suffix == ".html":
            headers["content-security-policy"] = CSP
        return 200, target.read_bytes(), content_type, headers

    def _vendor(self, name: str) -> Reply:
        content_type = VENDOR_ASSETS.get(name)
        if content_type is None or self.vendor_dir is None:
            return _problem(404, "not_found", self.vendor_error or "no such file")
        headers = {"cache-control": "max-age=86400", "x-content-type-options": "nosniff"}
        return 200, (self.vendor_dir / name).read_bytes(), content_type, headers

    @staticmethod
    def _body(raw: bytes) -> dict[str, Any] | None:
        if len(raw) > DEV_BODY_BYTES_MAX:
            return None
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    def _dev_token(self, raw: bytes) -> Reply:
        body = self._body(raw)
        user = body.get("user") if body else None
        admin = body.get("admin", False) if body else None
        if not isinstance(user, str) or not DEV_USER.fullmatch(user) or not isinstance(admin, bool):
            detail = 'body must be {"user": "<1-128 of A-Z a-z 0-9 _ . @ ->", "admin": true|false}'
            return _problem(422, "validation_error", detail)
        token = devauth.mint(user, ["admin"] if admin else [])
        return _json(200, {"token": token, "user": user, "admin": admin, "expires_in": devauth.TOKEN_TTL_S_DEFAULT})

    def _dev_reconcile(self) -> Reply:
        api = self.local.api
        if "ReconcileFunction" not in api.pool.specs:
            return _problem(404, "not_found", "the template declares no ReconcileFunction")
        report = api.pool.invoke("ReconcileFunction", {})
        return _json(200, report)


# ---------------------------------------------------------------- production: the files for the bucket
STACK_OUTPUTS = {
    "api_base": "ApiUrl",
    "console_url": "ConsoleUrl",
    "client_id": "ConsoleUserPoolClientId",
    "auth_domain": "ConsoleAuthDomain",
}


def production_config(
    *, api_base: str, console_url: str, client_id: str, auth_domain: str, low_balance_tokens: int
) -> dict[str, Any]:
    """The console's config.json in AWS: Cognito's hosted UI (PKCE) and the API's URL (stack outputs)."""
    for name, url in (("api_base", api_base), ("console_url", console_url), ("auth_domain", auth_domain)):
        if not url.startswith("https://"):
            raise ValueError(f"{name} must be an https:// URL, got {url!r}")
    return {
        "mode": "cognito",
        "api_base": api_base.rstrip("/"),
        "low_balance_tokens": low_balance_tokens,
        "chart": True,
        "dev_reconcile": False,
        "cognito": {
            "domain": auth_domain.rstrip("/"),
            "client_id": client_id,
            "redirect_uri": console_url,
            "logout_uri": console_url,
            "scopes": "openid email",
        },
    }


def build_site(dest: Path, config: dict[str, Any]) -> list[Path]:
    """The console as S3 will serve it under ``console/``: its files, uPlot, and ``config.json``."""
    vendor = install_pinned(UPLOT)
    written: list[Path] = []
    for source in sorted(CONSOLE_DIR.rglob("*")):
        relative = source.relative_to(CONSOLE_DIR)
        if source.is_file() and source.suffix in CONTENT_TYPES and _SAFE_PATH.fullmatch(relative.as_posix()):
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    (dest / "vendor").mkdir(parents=True, exist_ok=True)
    for name in VENDOR_ASSETS:
        shutil.copyfile(vendor / name, dest / "vendor" / name)
        written.append(dest / "vendor" / name)
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    written.append(dest / "config.json")
    return written


def stack_outputs(stack_name: str) -> dict[str, str]:
    import boto3

    stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.console", description="The web console's files.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("fetch", help="fetch uPlot (pinned, sha256-checked) into the cache")
    build = sub.add_parser("build", help="the files to upload to ConsoleBucket under console/ (docs/console.md)")
    build.add_argument("dest", type=Path)
    build.add_argument("--stack", help="read the URLs and client id from this stack's outputs")
    for option in STACK_OUTPUTS:
        build.add_argument(f"--{option.replace('_', '-')}")
    build.add_argument("--low-balance-tokens", type=int, default=LOW_BALANCE_TOKENS_DEFAULT)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            outputs = stack_outputs(args.stack) if args.stack else {}
            values = {k: getattr(args, k) or outputs.get(output, "") for k, output in STACK_OUTPUTS.items()}
            config = production_config(**values, low_balance_tokens=args.low_balance_tokens)
            for path in build_site(args.dest, config):
                print(path)
        else:
            print(install_pinned(UPLOT))
    except (NpmFetchFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
