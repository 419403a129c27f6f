"""The composition root: the configuration, read once, and every object a function is built from.

A handler calls `Settings.from_env()` once at cold start and the `build_*` of its concern; the
local stack, bench and tests do the same, or build a `Settings` of their own. Nothing else reads
the environment or wires adapters into services. Each builder imports its adapters and services
when it runs, so a function loads only what its own builder needs (cold start,
docs/benchmarks.md). Builders make no AWS call: clients call nothing until used, and secrets
are read on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the adapters and services are imported by the builders, at run time
    from tokenledger.adapters.dynamodb import DynamoLedgerRepository
    from tokenledger.adapters.eventbridge import EventBridgePublisher
    from tokenledger.adapters.reports import ReportStore
    from tokenledger.adapters.scan import DynamoAuditReads, StripePayments
    from tokenledger.adapters.stripe_signature import StripeSignatureVerifier
    from tokenledger.domain.model import Entry
    from tokenledger.service.admin import AdminOperations
    from tokenledger.service.checkout import CheckoutSessions
    from tokenledger.service.cursor import CursorCodec
    from tokenledger.service.ledger import Ledger
    from tokenledger.service.predictions import Predictions, SettlementQueue
    from tokenledger.service.reconcile.fleet import ReconcileRun
    from tokenledger.service.reconcile.ports import Progress
    from tokenledger.service.stripe_credits import StripeCredits

RECONCILE_SEGMENTS_DEFAULT = 8


def _text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value without surrounding blanks; None when it is unset or blank."""
    value = environ.get(name, "").strip()
    return value or None


def _int(environ: Mapping[str, str], name: str) -> int | None:
    value = _text(environ, name)
    return None if value is None else int(value)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


class NotConfigured(RuntimeError):
    """A function was built without a setting its template entry must give it (a deployment error)."""


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise NotConfigured(f"{name} is not set")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the functions read, named as in template.yaml's environment variables.

    The three ledger tables are set for every function; the rest only where the template gives
    them, and the builder that needs one says so (`NotConfigured`) when it is missing.
    """

    accounts_table: str  # ACCOUNTS_TABLE
    entries_table: str  # ENTRIES_TABLE
    idempotency_table: str  # IDEMPOTENCY_TABLE
    predictions_table: str | None = None  # PREDICTIONS_TABLE
    settlement_queue_url: str | None = None  # SETTLEMENT_QUEUE_URL
    cursor_secret_name: str | None = None  # CURSOR_SECRET_NAME: history cursors' key
    welcome_grant_tokens: str = "0"  # WELCOME_GRANT_TOKENS, checked when the trigger is built
    stripe_events_table: str | None = None  # STRIPE_EVENTS_TABLE
    stripe_webhook_secret_name: str | None = None  # STRIPE_WEBHOOK_SECRET_NAME
    stripe_api_key_secret_name: str | None = None  # STRIPE_API_KEY_SECRET_NAME
    stripe_api_base: str | None = None  # STRIPE_API_BASE: None is Stripe's own API
    checkout_allowed_origins: str | None = None  # CHECKOUT_ALLOWED_ORIGINS
    checkout_success_url: str | None = None  # CHECKOUT_SUCCESS_URL
    checkout_cancel_url: str | None = None  # CHECKOUT_CANCEL_URL
    event_bus_name: str | None = None  # EVENT_BUS_NAME
    low_balance_tokens: int = 0  # LOW_BALANCE_TOKENS
    reports_bucket: str | None = None  # REPORTS_BUCKET
    reconcile_segments: int = RECONCILE_SEGMENTS_DEFAULT  # RECONCILE_SEGMENTS
    reconcile_scan_page_items: int | None = None  # RECONCILE_SCAN_PAGE_ITEMS (None: the scan's maximum)
    reconcile_scan_threads: int | None = None  # RECONCILE_SCAN_THREADS (None: the scan's maximum)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """From the process environment (Lambda sets it from the template), or from `environ`."""
        env = os.environ if environ is None else environ
        return cls(
            accounts_table=env["ACCOUNTS_TABLE"],
            entries_table=env["ENTRIES_TABLE"],
            idempotency_table=env["IDEMPOTENCY_TABLE"],
            predictions_table=_text(env, "PREDICTIONS_TABLE"),
            settlement_queue_url=_text(env, "SETTLEMENT_QUEUE_URL"),
            cursor_secret_name=_text(env, "CURSOR_SECRET_NAME"),
            welcome_grant_tokens=env.get("WELCOME_GRANT_TOKENS", "0"),
            stripe_events_table=_text(env, "STRIPE_EVENTS_TABLE"),
            stripe_webhook_secret_name=_text(env, "STRIPE_WEBHOOK_SECRET_NAME"),
            stripe_api_key_secret_name=_text(env, "STRIPE_API_KEY_SECRET_NAME"),
            stripe_api_base=_text(env, "STRIPE_API_BASE"),
            checkout_allowed_origins=env.get("CHECKOUT_ALLOWED_ORIGINS"),
            checkout_success_url=env.get("CHECKOUT_SUCCESS_URL"),
            checkout_cancel_url=env.get("CHECKOUT_CANCEL_URL"),
            event_bus_name=_text(env, "EVENT_BUS_NAME"),
            low_balance_tokens=_or(_int(env, "LOW_BALANCE_TOKENS"), 0),
            reports_bucket=_text(env, "REPORTS_BUCKET"),
            reconcile_segments=_or(_int(env, "RECONCILE_SEGMENTS"), RECONCILE_SEGMENTS_DEFAULT),
            reconcile_scan_page_items=_int(env, "RECONCILE_SCAN_PAGE_ITEMS"),
            reconcile_scan_threads=_int(env, "RECONCILE_SCAN_THREADS"),
        )


# ---------------------------------------------------------------------- the ledger and its use cases
def build_repository(settings: Settings, *, dynamodb: Any = None) -> DynamoLedgerRepository:
    """The ledger's repository on DynamoDB (`dynamodb`: a client of the caller's, else one from the environment)."""
    from tokenledger.adapters.dynamodb import DynamoLedgerRepository, make_client

    return DynamoLedgerRepository(
        make_client() if dynamodb is None else dynamodb,
        accounts_table=settings.accounts_table,
        entries_table=settings.entries_table,
        idempotency_table=settings.idempotency_table,
        predictions_table=settings.predictions_table,
    )


def build_cursor_codec(settings: Settings) -> CursorCodec:
    """History cursors keyed by the secret `CURSOR_SECRET_NAME` (read on first use, cached).

    Without it (functions that never page, scripts), a key of this process alone.
    """
    from tokenledger.service.cursor import CursorCodec, key_from_secret

    if settings.cursor_secret_name is None:
        return CursorCodec()
    from tokenledger.adapters.dynamodb import make_client
    from tokenledger.adapters.stripe_signature import secret_from_secrets_manager

    reader = secret_from_secrets_manager(settings.cursor_secret_name, client=make_client("secretsmanager"))
    return CursorCodec(key_from_secret(reader))


def build_ledger(settings: Settings, *, dynamodb: Any = None) -> Ledger:
    """The one write path (service/ledger.py) on DynamoDB, with its clock, ids and history cursors."""
    from tokenledger.adapters.ids import new_ulid, utc_now_iso
    from tokenledger.service.ledger import Ledger

    return Ledger(
        build_repository(settings, dynamodb=dynamodb),
        clock=utc_now_iso,
        new_id=new_ulid,
        cursors=build_cursor_codec(settings),
    )


def build_admin(settings: Settings, *, dynamodb: Any = None) -> AdminOperations:
    """Admin use cases (batches, reversals, balances, opening accounts) on the ledger."""
    from tokenledger.service.admin import AdminOperations

    return AdminOperations(build_ledger(settings, dynamodb=dynamodb))


def build_predictions(settings: Settings, *, queue: SettlementQueue | None = None) -> Predictions:
    """Close and settle predictions: the ledger, the predictions table and the settlement queue.

    `queue` replaces the SQS queue named by `SETTLEMENT_QUEUE_URL` (bench plays its own).
    """
    from tokenledger.adapters.ids import new_ulid, utc_now_iso
    from tokenledger.adapters.predictions import DynamoPredictionStore, SqsSettlementQueue
    from tokenledger.service.predictions import Predictions

    admin = build_admin(settings)
    store = DynamoPredictionStore(
        admin.ledger.repo.client,  # type: ignore[attr-defined]
        predictions_table=_required(settings.predictions_table, "PREDICTIONS_TABLE"),
        idempotency_table=settings.idempotency_table,
    )
    if queue is None and settings.settlement_queue_url is not None:
        queue = SqsSettlementQueue(settings.settlement_queue_url)
    return Predictions(admin, store, queue, clock=utc_now_iso, new_id=new_ulid)


@dataclass(frozen=True, slots=True)
class AccountOpening:
    """The Cognito trigger's parts: the admin use cases and the welcome grant, checked at cold start."""

    admin: AdminOperations
    welcome_grant_tokens: int


def build_account_opening(settings: Settings) -> AccountOpening:
    from tokenledger.service.admin import check_welcome_grant_tokens

    tokens = check_welcome_grant_tokens(settings.welcome_grant_tokens)
    return AccountOpening(admin=build_admin(settings), welcome_grant_tokens=tokens)


# ---------------------------------------------------------------------- Stripe
@dataclass(frozen=True, slots=True)
class StripeWebhook:
    """The webhook's parts, built once per execution environment."""

    verifier: StripeSignatureVerifier
    credits: StripeCredits


def build_stripe_webhook(settings: Settings) -> StripeWebhook:
    """Signature check with the secret `STRIPE_WEBHOOK_SECRET_NAME`; credits on the ledger and `STRIPE_EVENTS_TABLE`."""
    from tokenledger.adapters.dynamodb import make_client
    from tokenledger.adapters.ids import utc_now_iso
    from tokenledger.adapters.stripe_signature import StripeSignatureVerifier, secret_from_secrets_manager
    from tokenledger.adapters.stripe_store import DynamoStripeStore
    from tokenledger.service.stripe_credits import StripeCredits

    dynamodb = make_client()
    store = DynamoStripeStore(
        dynamodb,
        entries_table=settings.entries_table,
        idempotency_table=settings.idempotency_table,
        events_table=_required(settings.stripe_events_table, "STRIPE_EVENTS_TABLE"),
        accounts_table=settings.accounts_table,
    )
    secret_name = _required(settings.stripe_webhook_secret_name, "STRIPE_WEBHOOK_SECRET_NAME")
    secret = secret_from_secrets_manager(secret_name, client=make_client("secretsmanager"))
    return StripeWebhook(
        verifier=StripeSignatureVerifier(secret),
        credits=StripeCredits(ledger=build_ledger(settings, dynamodb=dynamodb), store=store, clock=utc_now_iso),
    )


def build_checkout(settings: Settings) -> CheckoutSessions:
    """Checkout Sessions: the Stripe API key's secret, the API base, the redirect settings, the idempotency table."""
    import time

    from tokenledger.adapters.dynamodb import make_client
    from tokenledger.adapters.stripe_checkout import DynamoCheckoutRecords, StripeCheckoutProvider, log_price_mismatch
    from tokenledger.adapters.stripe_signature import secret_from_secrets_manager
    from tokenledger.domain.catalog import load_catalog
    from tokenledger.service.checkout import CheckoutSessions, CheckoutSettings

    checkout_settings = CheckoutSettings.parse(
        allowed_origins=_required(settings.checkout_allowed_origins, "CHECKOUT_ALLOWED_ORIGINS"),
        success_url=_required(settings.checkout_success_url, "CHECKOUT_SUCCESS_URL"),
        cancel_url=_required(settings.checkout_cancel_url, "CHECKOUT_CANCEL_URL"),
    )
    secret_name = _required(settings.stripe_api_key_secret_name, "STRIPE_API_KEY_SECRET_NAME")
    api_key = secret_from_secrets_manager(secret_name, client=make_client("secretsmanager"))
    return CheckoutSessions(
        provider=StripeCheckoutProvider(api_key, api_base=settings.stripe_api_base),
        records=DynamoCheckoutRecords(make_client(), table=settings.idempotency_table),
        settings=checkout_settings,
        catalog=load_catalog,
        clock=time.time,
        on_price_mismatch=log_price_mismatch,
    )


# ---------------------------------------------------------------------- events
def build_publisher(settings: Settings) -> EventBridgePublisher | None:
    """The publisher for the bus `EVENT_BUS_NAME` (None where the template names no bus)."""
    if settings.event_bus_name is None:
        return None
    from tokenledger.adapters.eventbridge import EventBridgePublisher, make_events_client

    return EventBridgePublisher(make_events_client(), settings.event_bus_name)


@dataclass(frozen=True, slots=True)
class StreamPublishing:
    """The events publisher's parts: the bus, the low-balance threshold, and how stream images read."""

    publisher: EventBridgePublisher
    low_balance_tokens: int
    entry_from_image: Callable[[dict[str, Any]], Entry]  # an entries table's new image, as an Entry
    plain_image: Callable[[dict[str, Any]], dict[str, Any]]  # any image as plain Python (numbers as int)


def build_stream_publishing(settings: Settings) -> StreamPublishing:
    from tokenledger.adapters.attributes import plain_item
    from tokenledger.adapters.dynamodb import entry_from_item

    publisher = build_publisher(settings)
    if publisher is None:
        raise NotConfigured("EVENT_BUS_NAME is not set")
    return StreamPublishing(
        publisher=publisher,
        low_balance_tokens=settings.low_balance_tokens,
        entry_from_image=entry_from_item,
        plain_image=plain_item,
    )


# ---------------------------------------------------------------------- reconciliation and audit
@dataclass(frozen=True, slots=True)
class AuditWiring:
    """What the reconcile and audit functions are built from (one per execution environment)."""

    settings: Settings
    dynamodb: Any
    probe: DynamoAuditReads
    payments: StripePayments | None
    store: ReportStore
    writer: DynamoLedgerRepository  # repairs write the account item through the ledger's repository
    clock: Callable[[], str]
    new_id: Callable[[], str]

    def reconcile_run(self, *, progress: Progress | None = None) -> ReconcileRun:
        from tokenledger.adapters.reports import part_key, part_snapshot_key, snapshot_key
        from tokenledger.adapters.scan import (
            SCAN_PAGE_ITEMS_MAX,
            SCAN_THREADS_MAX,
            DynamoLedgerPages,
            settlement_records,
        )
        from tokenledger.service.reconcile.fleet import ReconcileRun
        from tokenledger.service.reconcile.ports import ReportKeys

        settings = self.settings
        pages = DynamoLedgerPages(
            self.dynamodb,
            accounts_table=settings.accounts_table,
            entries_table=settings.entries_table,
            idempotency_table=settings.idempotency_table,
            stripe_events_table=settings.stripe_events_table if self.payments is not None else None,
            page_items_max=_or(settings.reconcile_scan_page_items, SCAN_PAGE_ITEMS_MAX),
            threads_max=_or(settings.reconcile_scan_threads, SCAN_THREADS_MAX),
        )
        settlements = None
        if settings.predictions_table:
            settlements = partial(
                settlement_records,
                self.dynamodb,
                table=settings.predictions_table,
                total_segments=settings.reconcile_segments,
            )
        return ReconcileRun(
            pages=pages,
            probe=self.probe,
            entry_index=self.probe,
            payments=self.payments,
            sink=self.store,
            keys=ReportKeys(snapshot=snapshot_key, part=part_key, part_snapshot=part_snapshot_key),
            clock=self.clock,
            new_id=self.new_id,
            **({"progress": progress} if progress is not None else {}),
            settlements=settlements,
        )


def _purchase_record_pk(payment_id: str) -> str:
    """The key the service gives a payment's exactly-once purchase record (`StripePayments` looks it up).

    Its module is imported on the first call (a run's check of refused payments), not at cold
    start: the audit routes never need it.
    """
    from tokenledger.service.clawback import purchase_record_pk

    return purchase_record_pk(payment_id)


def build_audit(settings: Settings) -> AuditWiring:
    """Clients and adapters for the audit and reconcile functions; the Stripe check when its table is named.

    No AWS call here: this runs at import, in the cold start, where a throttled DescribeTable
    used to fail the whole environment (issue #13 item 8). Boto3 clients make no call until used.
    """
    import boto3

    from tokenledger.adapters.dynamodb import CLIENT_CONFIG, make_client
    from tokenledger.adapters.ids import new_ulid, utc_now_iso
    from tokenledger.adapters.lazy import LazyClient
    from tokenledger.adapters.reports import ReportStore
    from tokenledger.adapters.scan import DynamoAuditReads, StripePayments

    bucket = _required(settings.reports_bucket, "REPORTS_BUCKET")
    dynamodb = make_client()
    payments = None
    if settings.stripe_events_table:
        payments = StripePayments(
            dynamodb,
            events_table=settings.stripe_events_table,
            entries_table=settings.entries_table,
            idempotency_table=settings.idempotency_table,
            purchase_record_pk=_purchase_record_pk,
        )
    return AuditWiring(
        settings=settings,
        dynamodb=dynamodb,
        probe=DynamoAuditReads(dynamodb, accounts_table=settings.accounts_table, entries_table=settings.entries_table),
        payments=payments,
        # Made on first use: the audit routes never touch S3, only the latest report does.
        store=ReportStore(LazyClient(lambda: boto3.client("s3", config=CLIENT_CONFIG)), bucket=bucket),
        writer=build_repository(settings, dynamodb=dynamodb),
        clock=utc_now_iso,
        new_id=new_ulid,
    )
