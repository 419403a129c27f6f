"""The Stripe use case against in-memory fakes: purchases once, clawbacks that add up exactly."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra import stripe_events
from tests.fakes import FakeRepository
from tokenledger.domain.model import AMOUNT_MAX, Account, Entry, EntryDraft, EntryType
from tokenledger.domain.stripe_events import EventRecord, StoredEvent, record_attributes, stored_event_from
from tokenledger.domain.stripe_outcomes import Outcome
from tokenledger.http.api import problem_status
from tokenledger.service.clawback import CLAWBACK_STEP_PREFIX, clawback_step_pk
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import Ledger
from tokenledger.service.ports import Guard
from tokenledger.service.stripe_clawbacks import refund_clawback_level
from tokenledger.service.stripe_credits import StripeCredits
from tokenledger.service.stripe_events import outcome_metrics

_ids = itertools.count()
TOKENS = 550  # the standard pack
PRICE = 1999


class FakeStripeStore:
    """`StripeStore` over the fake repository: event records are guards there, like any put-if-absent item."""

    def __init__(self, repo: FakeRepository) -> None:
        self.repo = repo
        self.puts = 0  # event records put on their own (not in an entry's transaction)

    @property
    def records(self) -> dict[str, EventRecord]:
        return {
            pk: stored_event_from(pk, attrs).record for pk, attrs in self.repo.guards.items() if pk.startswith("evt_")
        }

    def event_and_account(self, event_id: str, user_id: str) -> tuple[StoredEvent | None, Account | None]:
        return self.stored_event(event_id), self.repo.get_account(user_id)

    def stored_event(self, event_id: str) -> StoredEvent | None:
        attrs = self.repo.guards.get(event_id)
        return stored_event_from(event_id, attrs) if attrs is not None else None

    def put_event(self, record: EventRecord, *, processed_at: str, content_hash: str) -> StoredEvent | None:
        existing = self.stored_event(record.event_id)
        if existing is None:
            self.puts += 1
            self.repo.guards[record.event_id] = record_attributes(
                record, processed_at=processed_at, content_hash=content_hash
            )
        return existing

    def event_guard(self, record: EventRecord, *, processed_at: str, content_hash: str) -> Guard:
        attributes = record_attributes(record, processed_at=processed_at, content_hash=content_hash)
        return Guard(name="stripe_event", pk=record.event_id, attributes=attributes, table="events", key="event_id")

    def payment_outcomes(self, payment_id: str) -> set[str]:
        return {str(r.outcome) for r in self.records.values() if r.payment_id == payment_id}


def make_credits() -> tuple[StripeCredits, FakeRepository, FakeStripeStore]:
    repo = FakeRepository()
    store = FakeStripeStore(repo)
    ledger = Ledger(
        repo,
        clock=lambda: "2026-11-25T12:00:00.000Z",
        new_id=lambda: f"e{next(_ids):08d}",
        sleep=lambda _s: None,
        rng=lambda: 0.5,
        epoch_s=lambda: 1_000_000.0,
    )
    return StripeCredits(ledger=ledger, store=store, clock=lambda: "2026-11-25T12:00:00.000Z"), repo, store


def session_event(event_id: str, *, user: str = "u1", package: str = "standard", **fields: Any) -> dict[str, Any]:
    session = {
        "id": "cs_1",
        "object": "checkout.session",
        "payment_intent": "pi_1",
        "payment_status": "paid",
        "amount_total": PRICE,
        "amount_subtotal": PRICE,
        "currency": "usd",
        "metadata": {"user_id": user, "package_id": package},
    }
    event_type = fields.pop("type", "checkout.session.completed")
    session.update(fields)
    return stripe_events.stripe_event(event_type, session, event_id=event_id, created=1)


def refund_event(event_id: str, refunded: int) -> dict[str, Any]:
    charge = {"id": "ch_1", "payment_intent": "pi_1", "amount": PRICE, "amount_refunded": refunded, "currency": "usd"}
    return stripe_events.stripe_event("charge.refunded", charge, event_id=event_id)


def dispute_event(event_id: str, dispute_id: str = "dp_1") -> dict[str, Any]:
    dispute = {"id": dispute_id, "charge": "ch_1", "payment_intent": "pi_1", "amount": PRICE, "currency": "usd"}
    return stripe_events.stripe_event("charge.dispute.created", dispute, event_id=event_id)


def clawed(repo: FakeRepository, user: str = "u1") -> list[Entry]:
    return [e for e in repo.chain(user) if e.type is EntryType.CHARGEBACK]


# ---------------------------------------------------------------- the rounding rule
@settings(max_examples=300, deadline=None)
@given(
    tokens=st.integers(1, AMOUNT_MAX),
    amount=st.integers(1, 10**9),
    cuts=st.lists(st.floats(0, 1, allow_nan=False), max_size=12),
)
def test_partial_refund_levels_never_exceed_the_share_and_end_at_the_whole_purchase(
    tokens: int, amount: int, cuts: list[float]
) -> None:
    cumulative = sorted({int(amount * c) for c in cuts} | {amount})
    levels = [refund_clawback_level(tokens, refunded, amount) for refunded in cumulative]
    assert levels == sorted(levels), "a larger cumulative refund never lowers the level"
    for refunded, level in zip(cumulative, levels, strict=True):
        assert level * amount <= tokens * refunded < (level + 1) * amount, "the floor of the exact share"
    steps = [b - a for a, b in itertools.pairwise([0, *levels])]
    assert sum(steps) == tokens and all(s >= 0 for s in steps)


def test_the_documented_example_rounds_down_each_cumulative_share() -> None:
    assert [refund_clawback_level(550, r, 1999) for r in (500, 1000, 1999)] == [137, 275, 550]


@pytest.mark.parametrize(("refunded", "amount"), [(-1, 10), (11, 10), (0, 0)])
def test_impossible_refund_proportions_are_a_bug(refunded: int, amount: int) -> None:
    from tokenledger.domain.errors import InvariantViolation

    with pytest.raises(InvariantViolation):
        refund_clawback_level(10, refunded, amount)


# ---------------------------------------------------------------- purchases
def test_a_paid_session_credits_the_catalog_tokens_with_a_forever_key() -> None:
    webhook, repo, store = make_credits()
    record = webhook.handle(session_event("evt_1"))
    assert (record.outcome, record.tokens, record.payment_id, record.user_id) == (Outcome.CREDITED, 550, "pi_1", "u1")
    (entry,) = repo.chain("u1")
    assert (entry.type, entry.amount, entry.counterparty, entry.related_id) == (
        EntryType.PURCHASE,
        550,
        "stripe",
        "pi_1",
    )
    ((pk, (_, expires_at)),) = repo.idempotency.items()
    assert pk == "idem|purchase|stripe|pi_1" and expires_at is None
    assert store.records["evt_1"] == record
    repo.assert_consistent("u1")


def test_the_second_session_event_is_already_credited_and_its_redelivery_too() -> None:
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))
    second = session_event("evt_2", type="checkout.session.async_payment_succeeded")
    assert webhook.handle(second).outcome is Outcome.ALREADY_CREDITED
    assert webhook.handle(second).outcome is Outcome.ALREADY_CREDITED
    assert webhook.handle(session_event("evt_1")).outcome is Outcome.CREDITED  # the event that did it
    assert len(repo.chain("u1")) == 1


def test_the_same_payment_for_another_user_is_a_conflict_not_a_second_credit() -> None:
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))
    record = webhook.handle(session_event("evt_2", user="u2"))
    assert record.outcome is Outcome.PAYMENT_CONFLICT
    assert repo.chain("u2") == [] and len(repo.chain("u1")) == 1


def test_a_session_with_no_id_at_all_is_an_invalid_event() -> None:
    webhook, repo, _ = make_credits()
    assert webhook.handle(session_event("evt_1", id=None, payment_intent=None)).outcome is Outcome.INVALID_EVENT
    assert repo.entries == {}


def test_an_expanded_payment_intent_object_is_read_by_its_id() -> None:
    webhook, _repo, _ = make_credits()
    record = webhook.handle(session_event("evt_1", payment_intent={"id": "pi_1", "object": "payment_intent"}))
    assert (record.outcome, record.payment_id) == (Outcome.CREDITED, "pi_1")


# ---------------------------------------------------------------- clawbacks
def test_a_clawback_that_loses_its_step_takes_only_what_is_left() -> None:
    """Another clawback of the same purchase commits between our read of the level and our write."""
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))

    def competing_refund() -> None:
        repo.guards[clawback_step_pk("pi_1", 0)] = {"to": 275}
        balance = repo.accounts["u1"]
        ledger = webhook.ledger
        scope = IdempotencyScope(caller="test", route="other", key="k", request_hash=request_hash(None))
        draft = EntryDraft(type=EntryType.CHARGEBACK, amount=-275, counterparty="stripe", related_id="pi_1")
        assert balance.balance == 550
        ledger.write_single("u1", draft, scope=scope)

    repo.before_commit = competing_refund
    record = webhook.handle(dispute_event("evt_2"))
    assert (record.outcome, record.tokens, record.clawback_level) == (Outcome.CLAWED_BACK, -275, 550)
    assert sum(e.amount for e in clawed(repo)) == -550
    assert repo.guards[clawback_step_pk("pi_1", 275)]["to"] == 550
    repo.assert_consistent("u1")


def test_a_step_guard_names_the_event_and_the_levels() -> None:
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))
    webhook.handle(refund_event("evt_2", 1000))
    assert repo.guards[f"{CLAWBACK_STEP_PREFIX}|pi_1|0"] == {
        "to": 275,
        "from": 0,
        "event_id": "evt_2",
        "payment_id": "pi_1",
    }


@settings(max_examples=60, deadline=None)
@given(
    refunds=st.lists(st.integers(0, PRICE), max_size=6),
    dispute=st.booleans(),
    spent=st.integers(0, TOKENS),
    data=st.data(),
)
def test_any_order_of_refunds_disputes_and_redeliveries_takes_back_exactly_the_due_level(
    refunds: list[int], dispute: bool, spent: int, data: st.DataObject
) -> None:
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_buy"))
    if spent:
        scope = IdempotencyScope(caller="u1", route="spend", key="k", request_hash=request_hash(None))
        commitment = EntryDraft(type=EntryType.COMMITMENT, amount=-spent, counterparty="prediction:p", related_id="p")
        webhook.ledger.write_single("u1", commitment, scope=scope)
    cumulative = sorted(set(refunds))
    events = [refund_event(f"evt_r{r}", r) for r in cumulative]
    if dispute:
        events.append(dispute_event("evt_d"))
    redeliveries = data.draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    deliveries = data.draw(st.permutations(events + redeliveries))
    for event in deliveries:
        webhook.handle(event)
    due = TOKENS if dispute else refund_clawback_level(TOKENS, max(cumulative, default=0), PRICE)
    taken = clawed(repo)
    assert -sum(e.amount for e in taken) + sum(e.unrecovered or 0 for e in taken) == due
    assert -sum(e.amount for e in taken) == min(due, TOKENS - spent)
    repo.assert_consistent("u1")


def test_a_refund_before_the_purchase_asks_to_retry_later() -> None:
    webhook, repo, store = make_credits()
    record = webhook.handle(refund_event("evt_r", 1999))
    assert record.outcome is Outcome.PURCHASE_NOT_FOUND and record.retry_later
    assert repo.entries == {} and "evt_r" not in store.records  # not recorded: processed again when retried


def test_a_refund_of_a_payment_refused_for_its_package_is_acknowledged() -> None:
    webhook, _repo, _ = make_credits()
    webhook.handle(session_event("evt_1", package="diamond"))
    record = webhook.handle(refund_event("evt_r", 1999))
    assert (record.outcome, record.retry_later) == (Outcome.PURCHASE_NOT_CREDITED, False)


def test_a_user_entry_reusing_the_payment_id_is_not_taken_for_the_purchase() -> None:
    webhook, _repo, _ = make_credits()
    scope = IdempotencyScope(caller="u9", route="spend", key="k", request_hash=request_hash(None))
    webhook.ledger.write_single(
        "u9",
        EntryDraft(type=EntryType.GRANT, amount=5, counterparty="admin", related_id="pi_1"),
        scope=scope,
    )
    assert webhook.handle(refund_event("evt_r", 1999)).outcome is Outcome.PURCHASE_NOT_FOUND


@pytest.mark.parametrize(
    "charge",
    [
        {"id": "ch_1", "payment_intent": "pi_1", "amount": 0, "amount_refunded": 0},
        {"id": "ch_1", "payment_intent": "pi_1", "amount": 100, "amount_refunded": 101},
        {"id": "ch_1", "payment_intent": "pi_1", "amount": 100, "amount_refunded": True},
        {"id": "ch_1", "payment_intent": "pi_1", "amount": "100", "amount_refunded": 1},
        {"payment_intent": "pi_1", "amount": 100, "amount_refunded": 1},
    ],
)
def test_refund_events_with_impossible_numbers_are_invalid_and_move_nothing(charge: dict[str, Any]) -> None:
    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))
    record = webhook.handle({"id": "evt_r", "type": "charge.refunded", "data": {"object": charge}})
    assert record.outcome is Outcome.INVALID_EVENT
    assert clawed(repo) == []


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize(
    ("outcome", "unrecovered", "expected"),
    [
        (Outcome.CREDITED, None, {"StripeEvents": 1, "StripePurchasesCredited": 1}),
        (Outcome.UNKNOWN_PACKAGE, None, {"StripeEvents": 1, "StripePurchasesNotCredited": 1}),
        (Outcome.NOT_PAID, None, {"StripeEvents": 1, "StripePurchasesNotCredited": 1}),
        (Outcome.MISSING_METADATA, None, {"StripeEvents": 1, "StripePurchasesNotCredited": 1}),
        (Outcome.CLAWED_BACK, 7, {"StripeEvents": 1, "StripeClawbacks": 1, "StripeTokensUnrecovered": 7}),
        (Outcome.PURCHASE_NOT_FOUND, None, {"StripeEvents": 1, "StripePurchaseNotRecorded": 1}),
        (Outcome.IGNORED, None, {"StripeEvents": 1}),
    ],
)
def test_outcomes_map_to_a_fixed_set_of_metrics(
    outcome: Outcome, unrecovered: int | None, expected: dict[str, int]
) -> None:
    record = EventRecord(event_id="evt", type="t", outcome=outcome, unrecovered=unrecovered)
    assert dict(outcome_metrics(record)) == expected


# ---------------------------------------------------------------- hardening (issue #13)
def _admin(webhook: StripeCredits) -> Any:
    from tokenledger.service.admin import AdminOperations

    return AdminOperations(webhook.ledger)


def _reverse(webhook: StripeCredits, entry_id: str, key: str = "rev-1") -> Any:
    scope = IdempotencyScope(caller="ops", route="reversal", key=key, request_hash=request_hash({"e": entry_id}))
    return _admin(webhook).reverse(actor="ops", entry_id=entry_id, reason="fraud", scope=scope)


def _grant(webhook: StripeCredits, user: str, amount: int) -> None:
    scope = IdempotencyScope(caller="ops", route="grant", key=f"g{next(_ids)}", request_hash=request_hash(None))
    webhook.ledger.write_single(
        user,
        EntryDraft(type=EntryType.GRANT, amount=amount, counterparty="admin", reason="r", actor="ops"),
        scope=scope,
    )


def test_the_purchase_is_found_by_its_exactly_once_record_not_by_user_related_ids() -> None:
    webhook, repo, _ = make_credits()
    _grant(webhook, "u1", 100)
    for n in range(60):  # more than any page of an index: a buyer naming predictions after the payment
        scope = IdempotencyScope(caller="u1", route="commit", key=f"c{n}", request_hash=request_hash(n))
        webhook.ledger.commit(user_id="u1", prediction_id="pi_1", amount=1, metadata={}, scope=scope)
    webhook.handle(session_event("evt_1"))
    calls = len(repo.calls)
    record = webhook.handle(refund_event("evt_r", PRICE))
    assert (record.outcome, record.tokens) == (Outcome.CLAWED_BACK, -TOKENS)
    assert repo.get_account("u1").balance == 40  # type: ignore[union-attr]
    assert "get_idempotency" in repo.calls[calls:]
    repo.assert_consistent("u1")


@pytest.mark.parametrize("stripe_event", ["refund", "dispute"])
def test_a_reversal_then_a_stripe_clawback_takes_the_purchase_back_once(stripe_event: str) -> None:
    webhook, repo, _ = make_credits()
    _grant(webhook, "u1", 100)
    credited = webhook.handle(session_event("evt_1"))
    assert credited.entry_id is not None
    reversal = _reverse(webhook, credited.entry_id)
    assert reversal.body["entry"]["amount"] == -TOKENS
    event = refund_event("evt_r", PRICE) if stripe_event == "refund" else dispute_event("evt_d")
    assert webhook.handle(event).outcome is Outcome.NOTHING_DUE
    assert repo.get_account("u1").balance == 100  # type: ignore[union-attr]
    assert clawed(repo) == []
    repo.assert_consistent("u1")


def test_a_partial_refund_then_a_reversal_takes_only_the_rest() -> None:
    webhook, repo, _ = make_credits()
    _grant(webhook, "u1", 100)
    credited = webhook.handle(session_event("evt_1"))
    assert credited.entry_id is not None
    assert webhook.handle(refund_event("evt_r", 1000)).tokens == -275
    reversal = _reverse(webhook, credited.entry_id)
    assert reversal.body["entry"]["amount"] == -(TOKENS - 275)
    assert reversal.body["entry"]["metadata"] == {"clawed_back_before": "275"}
    assert _reverse(webhook, credited.entry_id).replayed  # the same request again: replayed, not refused
    assert webhook.handle(refund_event("evt_r2", PRICE)).outcome is Outcome.NOTHING_DUE
    assert repo.get_account("u1").balance == 100  # type: ignore[union-attr]
    repo.assert_consistent("u1")


def test_a_reversal_after_a_dispute_took_everything_is_already_clawed_back() -> None:
    from tokenledger.domain.errors import AlreadyClawedBack

    webhook, repo, _ = make_credits()
    credited = webhook.handle(session_event("evt_1"))
    assert credited.entry_id is not None
    webhook.handle(dispute_event("evt_d"))
    with pytest.raises(AlreadyClawedBack):
        _reverse(webhook, credited.entry_id)
    assert repo.get_account("u1").balance == 0  # type: ignore[union-attr]
    repo.assert_consistent("u1")


def test_reversing_a_chargeback_that_recovered_nothing_is_nothing_to_reverse() -> None:
    from tokenledger.domain.errors import NothingToReverse

    webhook, repo, _ = make_credits()
    webhook.handle(session_event("evt_1"))
    spend = IdempotencyScope(caller="u1", route="commit", key="all", request_hash=request_hash(None))
    webhook.ledger.commit(user_id="u1", prediction_id="p", amount=TOKENS, metadata={}, scope=spend)
    record = webhook.handle(dispute_event("evt_d"))
    assert (record.tokens, record.unrecovered) == (0, TOKENS)
    assert record.entry_id is not None
    with pytest.raises(NothingToReverse) as refused:
        _reverse(webhook, record.entry_id)
    assert (problem_status(refused.value), refused.value.code) == (409, "nothing_to_reverse")
    repo.assert_consistent("u1")


@pytest.mark.parametrize(
    "paid",
    [{"amount_subtotal": 1}, {"amount_subtotal": PRICE + 1}, {"currency": "eur"}, {"amount_subtotal": None}],
)
def test_a_session_paid_at_another_price_than_the_catalog_credits_nothing(paid: dict[str, Any]) -> None:
    webhook, repo, store = make_credits()
    record = webhook.handle(session_event("evt_1", **paid))
    assert record.outcome is Outcome.PRICE_MISMATCH and record.detail
    assert repo.entries == {} and store.records["evt_1"].outcome is Outcome.PRICE_MISMATCH
    assert dict(outcome_metrics(record)) == {
        "StripeEvents": 1,
        "StripePurchasesNotCredited": 1,
        "StripePriceMismatches": 1,
    }
    # a refund of it is acknowledged, not retried for ever
    assert webhook.handle(refund_event("evt_r", PRICE)).outcome is Outcome.PURCHASE_NOT_CREDITED


def test_the_same_event_id_with_other_content_is_refused_and_the_first_record_stands() -> None:
    from tokenledger.service.stripe_events import StripeEventConflict

    webhook, repo, store = make_credits()
    first = webhook.handle(session_event("evt_1", package="diamond"))
    assert first.outcome is Outcome.UNKNOWN_PACKAGE
    with pytest.raises(StripeEventConflict) as refused:
        webhook.handle(session_event("evt_1"))
    assert problem_status(refused.value) == 409
    assert repo.entries == {} and store.records["evt_1"] == first
    credited = webhook.handle(session_event("evt_2", payment_intent="pi_2"))
    with pytest.raises(StripeEventConflict):
        webhook.handle(session_event("evt_2", payment_intent="pi_3"))
    assert store.records["evt_2"] == credited and len(repo.entries) == 1


def test_a_redelivery_reads_once_and_writes_nothing() -> None:
    webhook, repo, store = make_credits()
    event = session_event("evt_1")
    event["pending_webhooks"] = 2
    first = webhook.handle(event)
    calls, puts, guards = len(repo.calls), store.puts, dict(repo.guards)
    event["pending_webhooks"] = 1  # changes between Stripe's deliveries: not content
    assert webhook.handle(event) == first
    assert repo.calls[calls:] == ["get_account"]  # the one BatchGetItem of the real store
    assert store.puts == puts and repo.guards == guards


@pytest.mark.parametrize(
    "event_id", ["", "evt_", "ev_1", "evt_" + "a" * 252, "evt_1|x", "evt_é", "evt_1\n", "pi_1", 7, None, ["evt_1"]]
)
def test_event_ids_that_are_not_stripe_ids_never_become_keys(event_id: Any) -> None:
    from tokenledger.domain.errors import ValidationFailed

    webhook, repo, _ = make_credits()
    event = session_event("evt_1")
    event["id"] = event_id
    with pytest.raises(ValidationFailed):
        webhook.handle(event)
    assert repo.guards == {} and repo.entries == {}
