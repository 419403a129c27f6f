"""``settle``: offered by ``infra/settle.py`` (it registers itself with ``add_parser``), if that module exists."""

from __future__ import annotations

import importlib

from infra.cli.core import Commands


def register(commands: Commands) -> None:
    try:
        settle = importlib.import_module("infra.settle")
    except ModuleNotFoundError as error:
        if error.name == "infra.settle":
            return
        raise
    if hasattr(settle, "add_parser"):
        settle.add_parser(commands)
