"""Swagger UI for the local stack's ``/docs``, from the npm package ``swagger-ui-dist`` (pinned, sha256-checked).

Fetched once with ``npm pack`` into ``$TOKENLEDGER_CACHE_DIR/swagger-ui/<version>`` (default
``~/.cache/tokenledger``), outside git; served from there. No CDN: the page loads nothing
from outside this machine. ``python -m infra.swagger_ui`` installs it ahead of time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.npm import NpmFetchFailed, Pinned, install_pinned

NPM_PACKAGE = "swagger-ui-dist"
NPM_VERSION = "5.35.0"
# sha256 of `npm pack swagger-ui-dist@5.35.0` (the registry's sha1 is 5c3b487ae5a2121b2c668d6f92b550707521876a).
TARBALL_SHA256 = "1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6"
NPM_TIMEOUT_S = 300

# The files /docs serves (and nothing else from the package).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


def _assets_folder(copy: Path) -> Path | None:
    """The package folder, if it holds every file /docs serves."""
    folder = copy / "package"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


SWAGGER_UI = Pinned(NPM_PACKAGE, NPM_VERSION, TARBALL_SHA256, "swagger-ui", _assets_folder, timeout_s=NPM_TIMEOUT_S)


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
        print(install_pinned(SWAGGER_UI))
    except NpmFetchFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
