"""POST /v1/webhooks/stripe end to end: events signed the way Stripe signs them, the real
handler on moto with tables and the secret from template.yaml, the ledger invariants after each."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe
from botocore.exceptions import ReadTimeoutError

from infra.api import ApiResponse, LocalApi
from infra.events import http_event
from infra.lambdas import Environment
from infra.stripe_events import stripe_signature
from infra.template import LOCAL_REGION
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent, chain_of

EVENTS = Path(__file__).resolve().parent.parent / "events"
ROUTE = "/v1/webhooks/stripe"
FUNCTION = "StripeWebhookFunction"
STANDARD = {"package_id": "standard", "tokens": 550, "price": 1999}  # as in the catalog
TABLES = STACK.table_names()


# ---------------------------------------------------------------- Stripe's side
def test_the_signature_helper_signs_what_the_stripe_package_accepts() -> None:
    header = stripe_signature('{"id": "evt_1"}', "whsec_abc")
    assert stripe.WebhookSignature.verify_header('{"id": "evt_1"}', header, "whsec_abc", tolerance=300)


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"stripe_{name}.json").read_text(encoding="utf-8"))
    return loaded


class Payment:
    """One Checkout payment of a package by a user, and the events Stripe sends about it."""

    def __init__(self, user_id: str, package_id: str = "standard", amount: int = 1999) -> None:
        tag = uuid.uuid4().hex[:12]
        self.user_id = user_id
        self.package_id = package_id
        self.amount = amount
        self.session_id = f"cs_test_{tag}"
        self.payment_intent = f"pi_{tag}"
        self.charge_id = f"ch_{tag}"

    @staticmethod
    def _event(name: str) -> dict[str, Any]:
        event = copy.deepcopy(load_event(name))
        event["id"] = f"evt_{uuid.uuid4().hex[:16]}"
        return event

    def session(self, name: str = "checkout_session_completed", **fields: Any) -> dict[str, Any]:
        event = self._event(name)
        session = event["data"]["object"]
        session.update(
            id=self.session_id,
            payment_intent=self.payment_intent,
            amount_total=self.amount,
            amount_subtotal=self.amount,
            metadata={"user_id": self.user_id, "package_id": self.package_id},
        )
        session.update(fields)
        return event

    def completed(self, **fields: Any) -> dict[str, Any]:
        return self.session("checkout_session_completed", **fields)

    def async_succeeded(self, **fields: Any) -> dict[str, Any]:
        return self.session("checkout_session_async_payment_succeeded", **fields)

    def refunded(self, amount_refunded: int) -> dict[str, Any]:
        event = self._event("charge_refunded")
        event["data"]["object"].update(
            id=self.charge_id,
            payment_intent=self.payment_intent,
            amount=self.amount,
            amount_captured=self.amount,
            amount_refunded=amount_refunded,
            refunded=amount_refunded == self.amount,
        )
        return event

    def disputed(self) -> dict[str, Any]:
        event = self._event("charge_dispute_created")
        event["data"]["object"].update(
            id=f"dp_{uuid.uuid4().hex[:12]}", charge=self.charge_id, payment_intent=self.payment_intent
        )
        return event


class StripeSender:
    """Delivers events to the local API the way Stripe does: the raw JSON body, signed."""

    def __init__(self, api: LocalApi, secret: str) -> None:
        self.api = api
        self.secret = secret

    def send(
        self,
        event: dict[str, Any] | None = None,
        *,
        body: str | None = None,
        signature: str | None = "sign",
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> ApiResponse:
        payload = body if body is not None else json.dumps(event, indent=2)
        headers = {"content-type": "application/json; charset=utf-8", "user-agent": "Stripe/1.0"}
        if signature == "sign":
            headers["stripe-signature"] = stripe_signature(payload, secret or self.secret, timestamp=timestamp)
        elif signature is not None:
            headers["stripe-signature"] = signature
        return self.api.request("POST", ROUTE, headers=headers, body=payload)


@pytest.fixture
def secret(aws: dict[str, Any]) -> str:
    """The endpoint's signing secret, put into the template's secret as an operator would."""
    value = f"whsec_{uuid.uuid4().hex}"
    secrets = boto3.client("secretsmanager", region_name=LOCAL_REGION)
    secrets.put_secret_value(SecretId=os.environ["STRIPE_WEBHOOK_SECRET_NAME"], SecretString=value)
    return value


@pytest.fixture
def stripe_api(api: LocalApi, secret: str) -> StripeSender:
    return StripeSender(api, secret)


# ---------------------------------------------------------------- what the tests look at
def entries(aws: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    """The user's entries as the API shows them, oldest first."""
    items = aws["dynamodb"].query(
        TableName=TABLES["EntriesTable"],
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
        ConsistentRead=True,
    )["Items"]
    from tokenledger.adapters.dynamodb import entry_from_item

    return [entry_from_item(item).to_api() for item in items]


def event_record(aws: dict[str, Any], event_id: str) -> dict[str, Any] | None:
    item = (
        aws["dynamodb"]
        .get_item(TableName=TABLES["StripeEventsTable"], Key={"event_id": {"S": event_id}}, ConsistentRead=True)
        .get("Item")
    )
    if item is None:
        return None
    plain: dict[str, Any] = {}
    for name, value in item.items():
        ((kind, raw),) = value.items()
        plain[name] = int(raw) if kind == "N" else raw
    return plain


def balance(user: Client) -> int:
    response = user.get("/v1/balance")
    assert response.status == 200
    return int(response.json["balance"])


def assert_received(response: ApiResponse) -> None:
    assert response.status == 200, response.body
    assert response.json == {"received": True}


def assert_problem(response: ApiResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["code"] == code
    assert response.json["status"] == status


def emitted_metrics(output: str) -> dict[str, float]:
    """Sum of each metric in the CloudWatch EMF lines Powertools printed."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return totals


# ---------------------------------------------------------------- purchases
def test_a_paid_checkout_session_credits_the_package_once(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    event = payment.completed()
    assert_received(stripe_api.send(event))

    history = user.get("/v1/transactions").json["items"]
    assert len(history) == 1
    purchase = history[0]
    assert (purchase["type"], purchase["amount"], purchase["balance_after"]) == ("purchase", 550, 550)
    assert (purchase["counterparty"], purchase["related_id"]) == ("stripe", payment.payment_intent)
    assert purchase["metadata"] == {
        "package_id": "standard",
        "checkout_session": payment.session_id,
        "stripe_event": event["id"],
    }
    assert balance(user) == 550
    record = event_record(aws, event["id"])
    assert record is not None
    assert record["outcome"] == "credited"
    assert (record["payment_id"], record["session_id"], record["user_id"]) == (
        payment.payment_intent,
        payment.session_id,
        user.sub,
    )
    assert (record["tokens"], record["entry_id"], record["entry_seq"]) == (550, purchase["entry_id"], 1)
    assert len(record["content_hash"]) == 64 and record["processed_at"]
    assert (record["amount"], record["currency"], record["type"]) == (1999, "usd", "checkout.session.completed")
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 550


def test_redeliveries_of_one_event_credit_once(stripe_api: StripeSender, user: Client, aws: dict[str, Any]) -> None:
    event = Payment(user.sub).completed()
    assert_received(stripe_api.send(event))
    first = event_record(aws, event["id"])
    for pending in (2, 1):
        event["pending_webhooks"] = pending  # what changes between Stripe's deliveries of one event
        assert_received(stripe_api.send(event))
    assert [e["type"] for e in entries(aws, user.sub)] == ["purchase"]
    record = event_record(aws, event["id"])
    assert record is not None and record == first  # a redelivery writes nothing
    assert record["outcome"] == "credited"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 550


def test_both_session_events_for_one_payment_credit_once(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    completed, succeeded = payment.completed(), payment.async_succeeded()
    assert_received(stripe_api.send(completed))
    assert_received(stripe_api.send(succeeded))
    assert [(e["type"], e["amount"]) for e in entries(aws, user.sub)] == [("purchase", 550)]
    first, second = event_record(aws, completed["id"]), event_record(aws, succeeded["id"])
    assert first is not None and second is not None
    assert (first["outcome"], second["outcome"]) == ("credited", "already_credited")
    assert first["entry_id"] == second["entry_id"]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 550


def test_a_delayed_payment_credits_on_async_success_not_on_the_unpaid_completion(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    unpaid = payment.completed(payment_status="unpaid")
    assert_received(stripe_api.send(unpaid))
    assert balance(user) == 0
    succeeded = payment.async_succeeded()
    assert_received(stripe_api.send(succeeded))
    assert_received(stripe_api.send(succeeded))
    assert balance(user) == 550
    assert [e["type"] for e in entries(aws, user.sub)] == ["purchase"]
    assert event_record(aws, unpaid["id"])["outcome"] == "not_paid"  # type: ignore[index]
    assert event_record(aws, succeeded["id"])["outcome"] == "credited"  # type: ignore[index]
    assert_account_consistent(aws["dynamodb"], STACK, user.sub)


def test_the_catalog_decides_the_tokens_never_the_event(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub, package_id="starter", amount=499)
    event = payment.completed(amount_total=999_999_99)  # after tax and discounts: not what the catalog checks
    event["data"]["object"]["metadata"]["tokens"] = "1000000"
    assert_received(stripe_api.send(event))
    assert balance(user) == 100  # the starter pack
    assert_account_consistent(aws["dynamodb"], STACK, user.sub)


def test_a_session_without_a_payment_intent_is_keyed_on_the_session(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    completed = payment.completed(payment_intent=None)
    assert_received(stripe_api.send(completed))
    assert_received(stripe_api.send(payment.async_succeeded(payment_intent=None)))
    assert [(e["type"], e["related_id"]) for e in entries(aws, user.sub)] == [("purchase", payment.session_id)]
    assert event_record(aws, completed["id"])["payment_id"] == payment.session_id  # type: ignore[index]
    assert_account_consistent(aws["dynamodb"], STACK, user.sub)


NOT_CREDITABLE = {
    "unpaid": ({"payment_status": "unpaid"}, "not_paid"),
    "no payment required": ({"payment_status": "no_payment_required"}, "not_paid"),
    "unknown package": ({"metadata": {"user_id": "u-x", "package_id": "diamond"}}, "unknown_package"),
    "no user": ({"metadata": {"package_id": "standard"}}, "missing_metadata"),
    "no package": ({"metadata": {"user_id": "u-x"}}, "missing_metadata"),
    "malformed user": ({"metadata": {"user_id": "u x/../y", "package_id": "standard"}}, "missing_metadata"),
    "no metadata": ({"metadata": None}, "missing_metadata"),
    "paid a cent": ({"amount_subtotal": 1}, "price_mismatch"),
    "paid in another currency": ({"currency": "eur"}, "price_mismatch"),
    "no subtotal": ({"amount_subtotal": None}, "price_mismatch"),
}


def test_sessions_that_cannot_be_credited_answer_200_are_recorded_and_counted(
    stripe_api: StripeSender,
    user: Client,
    aws: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    subtests: pytest.Subtests,
) -> None:
    for case, (change, outcome) in NOT_CREDITABLE.items():  # one world for all: each has its own payment
        with subtests.test(case):
            payment = Payment(user.sub)
            event = payment.completed(**change)
            capsys.readouterr()
            assert_received(stripe_api.send(event))
            metrics = emitted_metrics(capsys.readouterr().out)
            assert metrics.get("StripePurchasesNotCredited") == 1
            assert "StripePurchasesCredited" not in metrics
            assert entries(aws, user.sub) == [] and entries(aws, "u-x") == []
            record = event_record(aws, event["id"])
            assert record is not None
            assert (record["outcome"], record["payment_id"]) == (outcome, payment.payment_intent)
            assert "entry_id" not in record and record["detail"]
    assert_account_consistent(aws["dynamodb"], STACK, user.sub)


def test_other_event_types_are_acknowledged_and_ignored(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    event = load_event("payment_intent_succeeded")
    event["id"] = f"evt_{uuid.uuid4().hex[:16]}"
    assert_received(stripe_api.send(event))
    record = event_record(aws, event["id"])
    assert record is not None
    assert (record["outcome"], record["type"]) == ("ignored", "payment_intent.succeeded")
    assert "payment_id" not in record


# ---------------------------------------------------------------- signatures
def _tampered(stripe_api: StripeSender, event: dict[str, Any]) -> ApiResponse:
    payload = json.dumps(event)
    header = stripe_signature(payload, stripe_api.secret)
    return stripe_api.send(body=payload.replace('"standard"', '"whale"'), signature=header)


def _signed_twice(stripe_api: StripeSender, event: dict[str, Any]) -> ApiResponse:
    payload = json.dumps(event)
    t = int(time.time())
    header = f"t={t},v0={stripe_signature(payload, stripe_api.secret, timestamp=t).split('v1=')[1]}"
    return stripe_api.send(body=payload, signature=header)


BAD_DELIVERIES = {
    "wrong secret": lambda s, e: s.send(e, secret="whsec_not_the_endpoints"),
    "tampered body": _tampered,
    "stale timestamp": lambda s, e: s.send(e, timestamp=int(time.time()) - 301),
    "missing header": lambda s, e: s.send(e, signature=None),
    "empty header": lambda s, e: s.send(e, signature=""),
    "malformed header": lambda s, e: s.send(e, signature="garbage"),
    "non-numeric timestamp": lambda s, e: s.send(e, signature="t=yesterday,v1=00"),
    "no v1 signature": _signed_twice,
    "non-JSON body, signed": lambda s, e: s.send(body="not json {"),
    "JSON that is no event, signed": lambda s, e: s.send(body='["evt_1"]'),
    "binary body, not UTF-8": lambda s, e: s.api.request(
        "POST", ROUTE, headers={"stripe-signature": "t=1,v1=00"}, body=b"\xff\xfe" + json.dumps(e).encode()
    ),
}


def test_bad_signatures_get_400_and_move_nothing(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any], subtests: pytest.Subtests
) -> None:
    for case, deliver in BAD_DELIVERIES.items():  # one world for all: each has its own event
        with subtests.test(case):
            event = Payment(user.sub).completed()
            response = deliver(stripe_api, event)
            assert_problem(response, 400, "invalid_signature")
            assert stripe_api.secret not in response.body
            assert balance(user) == 0
            assert entries(aws, user.sub) == []
            assert event_record(aws, event["id"]) is None


def test_a_signature_within_the_tolerance_is_accepted(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    assert_received(stripe_api.send(Payment(user.sub).completed(), timestamp=int(time.time()) - 240))
    assert balance(user) == 550


def test_a_base64_encoded_delivery_is_verified_on_its_raw_bytes(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payload = json.dumps(Payment(user.sub).completed())
    headers = {"stripe-signature": stripe_signature(payload, stripe_api.secret)}
    assert_received(stripe_api.api.request("POST", ROUTE, headers=headers, body=payload.encode()))
    assert balance(user) == 550


def test_the_signing_secret_is_read_from_the_template_secret(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    """Signed with the placeholder the world was created with, before the operator's value: refused."""
    assert_problem(stripe_api.send(Payment(user.sub).completed(), secret="local-placeholder"), 400, "invalid_signature")
    assert balance(user) == 0


# ---------------------------------------------------------------- exactly once under failure and concurrency
class TimesOutAfterCommit:
    """A DynamoDB client whose TransactWriteItems commits, then times out as seen by the caller."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.committed = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self._client.transact_write_items(**kwargs)
        self.committed += 1
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def webhook_event(payload: str, secret: str) -> dict[str, Any]:
    route = next(r for r in STACK.routes() if r.path == ROUTE)
    headers = {"content-type": "application/json", "stripe-signature": stripe_signature(payload, secret)}
    return http_event(route, path=ROUTE, headers=headers, body=payload)


def status_of(raw: dict[str, Any]) -> int:
    return int(raw["statusCode"])


def test_a_delivery_whose_write_committed_but_timed_out_credits_once_on_redelivery(
    secret: str, user: Client, aws: dict[str, Any]
) -> None:
    event = Payment(user.sub).completed()
    payload = json.dumps(event)
    timing_out = Environment(STACK.functions()[FUNCTION])
    flaky = TimesOutAfterCommit(timing_out.module.webhook.credits.ledger.repo.client)
    timing_out.module.webhook.credits.ledger.repo.client = flaky

    first = timing_out.invoke(webhook_event(payload, secret))
    assert status_of(first) >= 500  # Stripe saw no 2xx: it will deliver again
    assert flaky.committed == 1
    assert balance(user) == 550  # the write did commit, and the event's record with it
    assert event_record(aws, event["id"])["outcome"] == "credited"  # type: ignore[index]

    retry = Environment(STACK.functions()[FUNCTION]).invoke(webhook_event(payload, secret))
    assert status_of(retry) == 200
    assert balance(user) == 550
    assert [e["type"] for e in entries(aws, user.sub)] == ["purchase"]
    record = event_record(aws, event["id"])
    assert record is not None and record["outcome"] == "credited"
    assert_account_consistent(aws["dynamodb"], STACK, user.sub)


def deliver_concurrently(payloads: list[str], secret: str) -> list[int]:
    """Each payload from its own thread and its own warm environment, released together."""
    environments = [Environment(STACK.functions()[FUNCTION]) for _ in payloads]
    events = [webhook_event(p, secret) for p in payloads]
    start = threading.Barrier(len(payloads))
    statuses: list[int] = [0] * len(payloads)
    errors: list[BaseException] = []

    def deliver(index: int) -> None:
        try:
            start.wait()
            statuses[index] = status_of(environments[index].invoke(events[index]))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return statuses


def test_the_same_event_delivered_concurrently_credits_once(secret: str, user: Client, aws: dict[str, Any]) -> None:
    payment = Payment(user.sub)
    completed = json.dumps(payment.completed())
    succeeded = json.dumps(payment.async_succeeded())
    statuses = deliver_concurrently([completed] * 3 + [succeeded] * 3, secret)
    assert statuses == [200] * 6
    assert [(e["type"], e["amount"]) for e in entries(aws, user.sub)] == [("purchase", 550)]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 550


# ---------------------------------------------------------------- refunds and disputes
def chargebacks(aws: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    return [e for e in entries(aws, user_id) if e["type"] == "chargeback"]


@pytest.fixture
def purchased(stripe_api: StripeSender, user: Client) -> Payment:
    """A credited purchase of the standard pack (550 tokens for 19.99)."""
    payment = Payment(user.sub)
    assert_received(stripe_api.send(payment.completed()))
    return payment


def test_partial_refunds_claw_back_in_proportion_and_add_up_to_the_purchase(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    # floor(550 * refunded / 1999) on the cumulative amount: 137, 275, then all 550.
    levels = []
    for refunded in (500, 1000, 1999):
        event = purchased.refunded(refunded)
        assert_received(stripe_api.send(event))
        record = event_record(aws, event["id"])
        assert record is not None and record["outcome"] == "clawed_back"
        assert (record["payment_id"], record["charge_id"], record["amount_refunded"]) == (
            purchased.payment_intent,
            purchased.charge_id,
            refunded,
        )
        levels.append(record["clawback_level"])
        assert_account_consistent(aws["dynamodb"], STACK, user.sub)
    assert levels == [137, 275, 550]
    taken = chargebacks(aws, user.sub)
    assert [e["amount"] for e in taken] == [-137, -138, -275]
    assert sum(e["amount"] for e in taken) == -550
    assert all(e["counterparty"] == "stripe" and e["related_id"] == purchased.payment_intent for e in taken)
    assert all("unrecovered" not in e for e in taken)
    assert balance(user) == 0


def test_a_redelivered_refund_claws_back_nothing_more(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    first = purchased.refunded(1000)
    assert_received(stripe_api.send(first))
    assert_received(stripe_api.send(purchased.refunded(1999)))
    assert_received(stripe_api.send(first))  # redelivered after the later refund
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-275, -275]
    record = event_record(aws, first["id"])
    assert record is not None
    assert (record["outcome"], record["tokens"]) == ("clawed_back", -275)
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_refunds_arriving_out_of_order_still_add_up_to_the_purchase(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    early, late, full = purchased.refunded(500), purchased.refunded(1000), purchased.refunded(1999)
    assert_received(stripe_api.send(late))
    assert_received(stripe_api.send(early))  # its level (137) is already covered by 275
    assert_received(stripe_api.send(full))
    assert event_record(aws, early["id"])["outcome"] == "nothing_due"  # type: ignore[index]
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-275, -275]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_refund_too_small_for_one_token_takes_nothing(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    event = purchased.refunded(3)  # floor(550 * 3 / 1999) = 0
    assert_received(stripe_api.send(event))
    assert chargebacks(aws, user.sub) == []
    assert event_record(aws, event["id"])["outcome"] == "nothing_due"  # type: ignore[index]
    assert balance(user) == 550


def test_a_dispute_claws_back_the_whole_purchase_once(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    dispute = purchased.disputed()
    assert_received(stripe_api.send(dispute))
    assert_received(stripe_api.send(dispute))
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-550]
    record = event_record(aws, dispute["id"])
    assert record is not None
    assert (record["outcome"], record["dispute_id"], record["clawback_level"]) == (
        "clawed_back",
        dispute["data"]["object"]["id"],
        550,
    )
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_dispute_after_a_partial_refund_takes_the_rest_and_a_later_refund_nothing(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    assert_received(stripe_api.send(purchased.refunded(1000)))
    assert_received(stripe_api.send(purchased.disputed()))
    later = purchased.refunded(1999)
    assert_received(stripe_api.send(later))
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-275, -275]
    assert event_record(aws, later["id"])["outcome"] == "nothing_due"  # type: ignore[index]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_clawback_never_goes_below_zero_and_records_what_it_could_not_recover(
    stripe_api: StripeSender,
    purchased: Payment,
    user: Client,
    aws: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    spent = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 500})
    assert spent.status == 201
    refund = purchased.refunded(1000)  # 275 due, 50 left
    capsys.readouterr()
    assert_received(stripe_api.send(refund))
    assert emitted_metrics(capsys.readouterr().out).get("StripeTokensUnrecovered") == 225
    dispute = purchased.disputed()  # the other 275 due, nothing left
    assert_received(stripe_api.send(dispute))

    taken = chargebacks(aws, user.sub)
    assert [(e["amount"], e["unrecovered"], e["balance_after"]) for e in taken] == [(-50, 225, 0), (0, 275, 0)]
    history = user.get("/v1/transactions", type="chargeback").json["items"]
    assert [e["unrecovered"] for e in history] == [275, 225]  # the user sees them too (newest first)
    assert event_record(aws, refund["id"])["unrecovered"] == 225  # type: ignore[index]
    assert event_record(aws, dispute["id"])["unrecovered"] == 275  # type: ignore[index]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_refund_before_its_purchase_is_refused_until_the_purchase_is_recorded(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    refund = payment.refunded(1999)
    refused = stripe_api.send(refund)
    assert_problem(refused, 409, "purchase_not_recorded")
    assert entries(aws, user.sub) == []
    assert event_record(aws, refund["id"]) is None  # not recorded: the retry is processed afresh

    assert_received(stripe_api.send(payment.completed()))
    assert_received(stripe_api.send(refund))  # Stripe's retry
    assert [e["amount"] for e in entries(aws, user.sub)] == [550, -550]
    assert event_record(aws, refund["id"])["outcome"] == "clawed_back"  # type: ignore[index]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_dispute_before_its_purchase_is_refused(stripe_api: StripeSender, user: Client, aws: dict[str, Any]) -> None:
    assert_problem(stripe_api.send(Payment(user.sub).disputed()), 409, "purchase_not_recorded")
    assert entries(aws, user.sub) == []


def test_a_refund_of_a_payment_that_was_never_credited_is_acknowledged(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub, package_id="diamond")
    assert_received(stripe_api.send(payment.completed()))
    refund = payment.refunded(1999)
    assert_received(stripe_api.send(refund))
    assert event_record(aws, refund["id"])["outcome"] == "purchase_not_credited"  # type: ignore[index]
    assert entries(aws, user.sub) == []


def test_a_refund_without_a_payment_intent_is_not_a_purchase(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    refund = Payment(user.sub).refunded(100)
    refund["data"]["object"]["payment_intent"] = None
    assert_received(stripe_api.send(refund))
    assert event_record(aws, refund["id"])["outcome"] == "not_a_purchase"  # type: ignore[index]


def test_a_commitment_naming_the_payment_intent_does_not_pass_for_the_purchase(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    other = Client(user.api, f"u-{uuid.uuid4().hex[:12]}")
    assert_received(stripe_api.send(Payment(other.sub).completed()))
    assert other.post("/v1/commitments", {"prediction_id": purchased.payment_intent, "amount": 10}).status == 201
    assert_received(stripe_api.send(purchased.refunded(1999)))
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-550]
    assert chargebacks(aws, other.sub) == []
    assert balance(other) == 540


def test_a_refund_whose_write_committed_but_timed_out_claws_back_once(
    secret: str, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    payload = json.dumps(purchased.refunded(1999))
    timing_out = Environment(STACK.functions()[FUNCTION])
    timing_out.module.webhook.credits.ledger.repo.client = TimesOutAfterCommit(
        timing_out.module.webhook.credits.ledger.repo.client
    )
    assert status_of(timing_out.invoke(webhook_event(payload, secret))) >= 500
    assert status_of(Environment(STACK.functions()[FUNCTION]).invoke(webhook_event(payload, secret))) == 200
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-550]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_concurrent_refund_and_dispute_deliveries_claw_back_exactly_the_purchase(
    secret: str, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    partial, full, dispute = purchased.refunded(1000), purchased.refunded(1999), purchased.disputed()
    payloads = [json.dumps(e) for e in (partial, partial, full, full, dispute, dispute)]
    statuses = deliver_concurrently(payloads, secret)
    assert statuses == [200] * len(payloads)
    taken = chargebacks(aws, user.sub)
    assert sum(e["amount"] for e in taken) == -550
    assert all(e["amount"] < 0 for e in taken)
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_logs_carry_ids_and_outcomes_never_the_event_or_the_secret(
    secret: str, user: Client, aws: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    event = Payment(user.sub).completed()
    environment = Environment(STACK.functions()[FUNCTION])
    environment.module.logger.setLevel("DEBUG")  # our logs at their most verbose; libraries at INFO
    with caplog.at_level("INFO"):
        assert status_of(environment.invoke(webhook_event(json.dumps(event), secret))) == 200
        assert status_of(environment.invoke(webhook_event(json.dumps(event), "whsec_wrong"))) == 400
    processed = [r for r in caplog.records if r.getMessage() == "stripe event processed"]
    assert len(processed) == 1
    assert (processed[0].stripe_event_id, processed[0].outcome) == (event["id"], "credited")
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    leaks = [r.name for r in caplog.records if secret in f"{r.getMessage()} {r.__dict__}"]
    assert not leaks, leaks
    assert "buyer@example.com" not in logged and "success_url" not in logged
    assert chain_of(aws["dynamodb"], STACK, user.sub)[0]["amount"] == 550


# ---------------------------------------------------------------- hardening (issue #13)
def test_commitments_named_after_the_payment_cannot_make_a_purchase_unrefundable(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    """Before: the purchase was looked up in the first 50 `by-related-id` entries of the payment id."""
    payment = Payment(user.sub)
    assert_received(stripe_api.send(Payment(user.sub).completed()))  # 550 other tokens to spend
    for _ in range(55):
        response = user.post("/v1/commitments", {"prediction_id": payment.payment_intent, "amount": 1})
        assert response.status == 201, response.body
    assert_received(stripe_api.send(payment.completed()))
    assert_received(stripe_api.send(payment.refunded(1999)))
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-550]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 550 - 55


def _admin_reverse(user: Client, entry_id: str) -> ApiResponse:
    admin = Client(user.api, f"admin-{uuid.uuid4().hex[:8]}", groups=["admin"])
    return admin.post(f"/v1/admin/entries/{entry_id}/reversal", {"reason": "chargeback fraud"})


def _purchase_entry(aws: dict[str, Any], user: Client, payment: Payment) -> dict[str, Any]:
    return next(
        e for e in entries(aws, user.sub) if e["related_id"] == payment.payment_intent and e["type"] == "purchase"
    )


def test_a_reversed_purchase_is_not_clawed_back_again_by_its_refund_or_dispute(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    assert_received(stripe_api.send(Payment(user.sub, package_id="starter", amount=499).completed()))  # 100 tokens
    payment = Payment(user.sub)
    assert_received(stripe_api.send(payment.completed()))
    reversal = _admin_reverse(user, _purchase_entry(aws, user, payment)["entry_id"])
    assert reversal.status == 201, reversal.body
    assert reversal.json["balance"] == 100
    assert_received(stripe_api.send(payment.refunded(1999)))
    assert_received(stripe_api.send(payment.disputed()))
    assert chargebacks(aws, user.sub) == []
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 100


def test_a_refunded_purchase_is_reversed_only_for_what_the_refund_left(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    assert_received(stripe_api.send(Payment(user.sub, package_id="starter", amount=499).completed()))
    payment = Payment(user.sub)
    assert_received(stripe_api.send(payment.completed()))
    assert_received(stripe_api.send(payment.refunded(1000)))  # 275 tokens back
    reversal = _admin_reverse(user, _purchase_entry(aws, user, payment)["entry_id"])
    assert reversal.status == 201, reversal.body
    assert reversal.json["entry"]["amount"] == -275
    assert reversal.json["balance"] == 100
    assert_received(stripe_api.send(payment.refunded(1999)))  # the rest of the refund: nothing more
    assert [e["amount"] for e in chargebacks(aws, user.sub)] == [-275]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 100


def test_reversals_of_a_disputed_purchase_and_of_an_empty_chargeback_are_refused_with_409(
    stripe_api: StripeSender, purchased: Payment, user: Client, aws: dict[str, Any]
) -> None:
    assert user.post("/v1/commitments", {"prediction_id": "p-all", "amount": 550}).status == 201
    assert_received(stripe_api.send(purchased.disputed()))  # recovers nothing: the balance is 0
    (empty,) = chargebacks(aws, user.sub)
    assert (empty["amount"], empty["unrecovered"]) == (0, 550)
    for _ in range(2):  # every retry gets the same answer, never a 500
        assert_problem(_admin_reverse(user, empty["entry_id"]), 409, "nothing_to_reverse")
    purchase = _purchase_entry(aws, user, purchased)
    assert_problem(_admin_reverse(user, purchase["entry_id"]), 409, "already_clawed_back")
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 0


def test_a_session_paid_below_the_catalog_price_credits_nothing_and_warns(
    stripe_api: StripeSender,
    user: Client,
    aws: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    payment = Payment(user.sub, package_id="whale", amount=1)
    event = payment.completed()
    capsys.readouterr()
    assert_received(stripe_api.send(event))
    assert emitted_metrics(capsys.readouterr().out).get("StripePriceMismatches") == 1, caplog.text
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert (warning.payment_id, warning.amount_subtotal) == (payment.payment_intent, 1)  # type: ignore[attr-defined]
    assert entries(aws, user.sub) == []
    assert event_record(aws, event["id"])["outcome"] == "price_mismatch"  # type: ignore[index]


def test_the_same_event_id_with_other_content_is_refused_and_recorded_once(
    stripe_api: StripeSender, user: Client, aws: dict[str, Any]
) -> None:
    payment = Payment(user.sub)
    event = payment.completed()
    assert_received(stripe_api.send(event))
    first = event_record(aws, event["id"])
    forged = copy.deepcopy(event)
    forged["data"]["object"]["payment_intent"] = f"pi_{uuid.uuid4().hex[:12]}"
    assert_problem(stripe_api.send(forged), 409, "stripe_event_conflict")
    assert event_record(aws, event["id"]) == first
    assert [e["type"] for e in entries(aws, user.sub)] == ["purchase"]
    bad = payment.completed()
    bad["id"] = "evt_1|guard|x"
    assert_problem(stripe_api.send(bad), 422, "validation_error")
    assert entries(aws, user.sub) == [e for e in entries(aws, user.sub) if e["type"] == "purchase"]


def test_a_signature_from_the_future_is_refused(stripe_api: StripeSender, user: Client) -> None:
    event = Payment(user.sub).completed()
    assert_problem(stripe_api.send(event, timestamp=int(time.time()) + 3600), 400, "invalid_signature")
    assert_received(stripe_api.send(event, timestamp=int(time.time()) + 60))  # clock skew is tolerated
