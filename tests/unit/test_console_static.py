"""The console's static files, read as text: contrast of its colours, no innerHTML, imports that resolve."""

from __future__ import annotations

import re

import pytest

from infra.console import CONSOLE_DIR

CSS = (CONSOLE_DIR / "console.css").read_text(encoding="utf-8")
SCRIPTS = sorted((CONSOLE_DIR / "js").glob("*.js"))
WCAG_AA_TEXT = 4.5
HEADER_BG = "#13233a"
NAV_CURRENT_BG = "#2d4d7a"
WHITE = "#ffffff"


def colour(name: str) -> str:
    found = re.search(rf"--{name}:\s*(#[0-9a-fA-F]{{6}})", CSS)
    assert found, f"--{name} is not a #rrggbb colour in console.css"
    return found.group(1)


def luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize(
    ("foreground", "background"),
    [
        ("text", "bg"),
        ("text", "card"),
        ("muted", "bg"),
        ("muted", "card"),
        ("accent", "card"),
        ("accent", "bg"),
        ("accent-text", "accent"),
        ("ok", "ok-bg"),
        ("warn", "warn-bg"),
        ("bad", "bad-bg"),
    ],
)
def test_text_colours_meet_wcag_aa_contrast(foreground: str, background: str) -> None:
    ratio = contrast(colour(foreground), colour(background))
    assert ratio >= WCAG_AA_TEXT, f"--{foreground} on --{background}: {ratio:.2f}:1"


@pytest.mark.parametrize("background", [HEADER_BG, NAV_CURRENT_BG])
def test_the_header_and_its_current_page_link_are_readable(background: str) -> None:
    assert background in CSS
    assert contrast(WHITE, background) >= WCAG_AA_TEXT


def test_a_visible_focus_ring_is_styled() -> None:
    assert re.search(r":focus-visible\s*\{[^}]*outline:\s*3px solid", CSS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_write_markup_from_strings(script: object) -> None:
    source = script.read_text(encoding="utf-8")  # type: ignore[attr-defined]
    for sink in ("innerHTML", "outerHTML =", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, f"{sink} in {script}: text goes in through textContent only"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_module_imports_resolve_to_console_files(script: object) -> None:
    source = script.read_text(encoding="utf-8")  # type: ignore[attr-defined]
    for target in re.findall(r'from\s+"(\./[^"]+)"', source):
        assert (CONSOLE_DIR / "js" / target).resolve().is_file(), f"{script}: {target}"
