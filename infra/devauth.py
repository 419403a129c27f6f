"""Development identity for the local stack: JWTs signed with a key that never leaves this machine.

The real service sits behind API Gateway's JWT authorizer (Cognito). Locally, tokens are
signed RS256 with a development key generated once into a cache folder outside git
(``$TOKENLEDGER_CACHE_DIR/devkey``, default ``~/.cache/tokenledger/devkey``) and verified by
the local HTTP front, which then passes the claims the way API Gateway does: every claim a
string, an array claim such as ``cognito:groups`` as ``"[admin support]"``.

The same folder holds the development Stripe webhook signing secret, so the local stack
(which puts it into the local Secrets Manager) and ``tokenledger stripe-purchase`` (which
signs events with it) agree without any configuration.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

CACHE_ENV_VAR = "TOKENLEDGER_CACHE_DIR"
DEVKEY_ENV_VAR = "TOKENLEDGER_DEVKEY_DIR"
ALGORITHM = "RS256"
ISSUER = "tokenledger-local"
AUDIENCE = "tokenledger-local"
GROUPS_CLAIM = "cognito:groups"
RSA_KEY_BITS = 2048
TOKEN_TTL_S_DEFAULT = 3600
TOKEN_TTL_S_MAX = 7 * 24 * 3600
CLOCK_SKEW_S = 30
SUB_CHARS_MAX = 128

_KEY_FILE = "jwt-rs256.pem"
_STRIPE_SECRET_FILE = "stripe-webhook-secret"
_lock = threading.Lock()
_keys: dict[Path, RSAPrivateKey] = {}


class InvalidToken(Exception):
    """A bearer token that the local authorizer refuses (the reason is safe to show)."""


def devkey_dir() -> Path:
    """``$TOKENLEDGER_DEVKEY_DIR``, else ``$TOKENLEDGER_CACHE_DIR/devkey`` (default ``~/.cache/tokenledger/devkey``)."""
    explicit = os.environ.get(DEVKEY_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "tokenledger"
    return base / "devkey"


def _create_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` (mode 0600) unless it exists; the first writer wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        # link() refuses to replace: two processes creating the key at once agree on one.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def signing_key(directory: Path | None = None) -> RSAPrivateKey:
    """The development signing key, created on first use."""
    path = (directory or devkey_dir()) / _KEY_FILE
    with _lock:
        cached = _keys.get(path)
        if cached is not None:
            return cached
        if not path.is_file():
            fresh = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
            pem = fresh.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            _create_private_file(path, pem)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, RSAPrivateKey):
            raise InvalidToken(f"{path} does not hold an RSA private key; delete it to make a new one")
        _keys[path] = loaded
        return loaded


def mint(
    sub: str,
    groups: Iterable[str] = (),
    *,
    ttl_s: int = TOKEN_TTL_S_DEFAULT,
    now: float | None = None,
    directory: Path | None = None,
) -> str:
    """A development access token for ``sub`` in ``groups`` (e.g. ``["admin"]``)."""
    if not sub or len(sub) > SUB_CHARS_MAX:
        raise ValueError(f"sub must be 1..{SUB_CHARS_MAX} characters")
    if not 1 <= ttl_s <= TOKEN_TTL_S_MAX:
        raise ValueError(f"ttl must be 1..{TOKEN_TTL_S_MAX} seconds")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "client_id": AUDIENCE,
        "token_use": "access",
        "username": sub,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": secrets.token_hex(8),
    }
    group_list = sorted(set(groups))
    if group_list:
        claims[GROUPS_CLAIM] = group_list
    return jwt.encode(claims, signing_key(directory), algorithm=ALGORITHM)


def verify(token: str, *, directory: Path | None = None) -> dict[str, Any]:
    """The token's claims if it is a valid development token; raises ``InvalidToken``."""
    public_key = signing_key(directory).public_key()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=CLOCK_SKEW_S,
            options={"require": ["sub", "exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"the token is not valid here ({type(exc).__name__})") from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidToken("the token has no subject")
    return claims


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raises ``InvalidToken``."""
    if not authorization:
        raise InvalidToken("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway's JWT authorizer passes them: strings, arrays as ``"[a b]"``."""
    passed: dict[str, str] = {}
    for name, value in claims.items():
        if isinstance(value, list | tuple):
            passed[name] = "[" + " ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            passed[name] = "true" if value else "false"
        else:
            passed[name] = str(value)
    return passed


def stripe_webhook_secret(directory: Path | None = None) -> str:
    """The development Stripe webhook signing secret (``whsec_...``), created on first use."""
    path = (directory or devkey_dir()) / _STRIPE_SECRET_FILE
    with _lock:
        if not path.is_file():
            _create_private_file(path, f"whsec_{secrets.token_hex(24)}\n".encode())
        return path.read_text(encoding="utf-8").strip()
