"""Swagger UI for the local stack's ``/docs``, from the npm package ``swagger-ui-dist`` (pinned, sha256-checked).

Fetched once with ``npm pack`` into ``$TOKENLEDGER_CACHE_DIR/swagger-ui/<version>`` (default
``~/.cache/tokenledger``), outside git; served from there. No CDN: the page loads nothing
from outside this machine. ``python -m infra.swagger_ui`` installs it ahead of time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infra.npm import NpmFetchFailed, install_pinned, is_installed

NPM_PACKAGE = "swagger-ui-dist"
NPM_VERSION = "5.35.0"
# sha256 of `npm pack swagger-ui-dist@5.35.0` (the registry's sha1 is 5c3b487ae5a2121b2c668d6f92b550707521876a).
TARBALL_SHA256 = "1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6"
NPM_TIMEOUT_S = 300
CACHE_ENV_VAR = "TOKENLEDGER_CACHE_DIR"

# The files /docs serves (and nothing else from the package).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


class SwaggerUIUnavailable(RuntimeError):
    """swagger-ui-dist is not installed and cannot be fetched here."""


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "tokenledger"
    return base / "swagger-ui" / NPM_VERSION


def find_installed() -> Path | None:
    """The folder holding the assets, if a complete verified copy is cached."""
    folder = cache_dir()
    if is_installed(folder) and all((folder / "package" / name).is_file() for name in ASSETS):
        return folder / "package"
    return None


def ensure_installed() -> Path:
    """Fetch, verify and unpack the package if needed; returns the folder with the assets."""
    found = find_installed()
    if found is not None:
        return found
    try:
        install_pinned(NPM_PACKAGE, NPM_VERSION, TARBALL_SHA256, cache_dir(), timeout_s=NPM_TIMEOUT_S)
    except NpmFetchFailed as exc:
        raise SwaggerUIUnavailable(str(exc)) from exc
    found = find_installed()
    if found is None:
        raise SwaggerUIUnavailable(f"{cache_dir()} is incomplete; delete it and retry")
    return found


def page(title: str, spec_url: str, assets_url: str) -> str:
    """The /docs page: Swagger UI on ``spec_url``, everything served by this server."""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{assets_url}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{assets_url}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets_url}/swagger-ui-bundle.js"></script>
  <script src="{assets_url}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{spec_url}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "BaseLayout"
    }});
  </script>
</body>
</html>
"""


def main() -> int:
    try:
        print(ensure_installed())
    except SwaggerUIUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
