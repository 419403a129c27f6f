"""The composition root: one `Settings` reads what the template sets; a missing setting is named."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from infra.template import Stack
from tokenledger import bootstrap
from tokenledger.bootstrap import NotConfigured, Settings

ROOT = Path(__file__).resolve().parents[2]
# Read elsewhere on purpose: by Powertools itself, and by observability.make_tracer before any wiring.
NOT_SETTINGS = {"POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME", "XRAY_SDK_TRACING"}
LEDGER_TABLES = {"ACCOUNTS_TABLE": "a", "ENTRIES_TABLE": "e", "IDEMPOTENCY_TABLE": "i"}


def test_every_variable_the_template_sets_is_a_setting_read_by_from_env() -> None:
    names = {name for spec in Stack().functions().values() for name in spec.environment} - NOT_SETTINGS
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert {name.lower() for name in names} <= fields
    numeric = {"LOW_BALANCE_TOKENS", "RECONCILE_SEGMENTS"}
    environ = {name: (str(n) if name in numeric else f"value-{n}") for n, name in enumerate(sorted(names))}
    settings = Settings.from_env(environ)
    for name, value in environ.items():
        assert str(getattr(settings, name.lower())) == value, name


def test_unset_and_blank_settings_take_their_defaults() -> None:
    settings = Settings.from_env({**LEDGER_TABLES, "EVENT_BUS_NAME": " ", "STRIPE_API_BASE": ""})
    assert settings.event_bus_name is None and settings.stripe_api_base is None
    assert (settings.low_balance_tokens, settings.reconcile_segments, settings.welcome_grant_tokens) == (0, 8, "0")
    assert settings.predictions_table is None and settings.reconcile_scan_threads is None


def test_a_builder_names_the_setting_its_function_lacks() -> None:
    bare = Settings.from_env(LEDGER_TABLES)
    with pytest.raises(NotConfigured, match="REPORTS_BUCKET"):
        bootstrap.build_audit(bare)
    with pytest.raises(NotConfigured, match="PREDICTIONS_TABLE"):
        bootstrap.build_predictions(bare)
    with pytest.raises(NotConfigured, match="EVENT_BUS_NAME"):
        bootstrap.build_stream_publishing(bare)
    assert bootstrap.build_publisher(bare) is None  # the reconcile function publishes only where a bus is named


def test_only_the_composition_root_reads_the_environment_in_the_package() -> None:
    """Adapters and services are configured through `Settings`, never by reading `os.environ` themselves."""
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "shared" / "tokenledger").rglob("*.py")
        if re.search(r"os\.environ|os\.getenv", path.read_text())
    )
    # coldstart sets Pydantic's plugin switch before anything imports Pydantic; observability reads
    # X-Ray's switch for the tracer every handler makes before its wiring.
    assert readers == [
        "shared/tokenledger/bootstrap.py",
        "shared/tokenledger/coldstart.py",
        "shared/tokenledger/observability.py",
    ]
