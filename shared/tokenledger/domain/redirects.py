"""Where Checkout may send a buyer back to: exact origins from the template, nothing looser.

A URL is allowed when it is an absolute `http`/`https` URL whose origin (scheme, host, port)
equals one of the allowed origins exactly. Everything that lets a browser and a parser
disagree about the host is refused outright rather than normalised: user info (`a@b`),
backslashes, whitespace and control characters, non-ASCII, scheme-relative `//host`,
percent-encoded or empty hosts, and any port that does not parse.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from tokenledger.domain.errors import RedirectNotAllowed

REDIRECT_URL_CHARS_MAX = 2048  # browsers and Stripe take more; nobody needs more to come back
ALLOWED_ORIGINS_MAX = 50
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


class InvalidOrigin(ValueError):
    """An allowed-origin setting that is not `scheme://host[:port]` (a deployment error)."""


# One refusal per rule, each on its own line, so a reader can check them against docs/security.md.
def _split(url: str) -> SplitResult | None:  # noqa: PLR0911
    """The parts of an absolute http(s) URL with a plain host, or None for anything ambiguous."""
    if not isinstance(url, str) or not url or len(url) > REDIRECT_URL_CHARS_MAX:
        return None
    if not _VISIBLE_ASCII.fullmatch(url) or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for a port that is not a number in 0..65535
    except ValueError:
        return None
    if parts.scheme not in SCHEMES or "@" in parts.netloc or not parts.netloc:
        return None
    host = parts.hostname or ""
    if not (_HOST.fullmatch(host) or _IPV6.fullmatch(f"[{host}]")):
        return None
    if port == 0:
        return None
    return parts


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` with the default port left out, lower case; None if not a plain http(s) URL."""
    parts = _split(url)
    if parts is None:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def parse_allowed_origins(setting: str) -> frozenset[str]:
    """The comma-separated `CheckoutAllowedOrigins` parameter, each entry exactly `scheme://host[:port]`."""
    origins = set()
    for raw in setting.split(","):
        entry = raw.strip()
        if not entry:
            continue
        origin = origin_of(entry)
        if origin is None or entry.rstrip("/").lower() not in (origin, _with_default_port(origin)):
            raise InvalidOrigin(f"allowed origin {entry!r} is not scheme://host[:port] (http or https, no path)")
        origins.add(origin)
    if len(origins) > ALLOWED_ORIGINS_MAX:
        raise InvalidOrigin(f"at most {ALLOWED_ORIGINS_MAX} allowed origins")
    return frozenset(origins)


def _with_default_port(origin: str) -> str:
    scheme = origin.split(":", 1)[0]
    return f"{origin}:{DEFAULT_PORTS[scheme]}"


def check_redirect(url: str, allowed: frozenset[str], *, field: str) -> str:
    """`url` itself if its origin is allowed; else 422 `redirect_not_allowed` naming the field."""
    origin = origin_of(url)
    if origin is None or origin not in allowed:
        raise RedirectNotAllowed(
            f"{field} must be an absolute http(s) URL on an allowed origin (scheme, host and port exactly; "
            "no user info, backslashes, spaces or non-ASCII)",
            errors=[{"loc": ["body", field], "type": "redirect_not_allowed"}],
        )
    return url
