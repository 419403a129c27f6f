"""The reconcile function on moto: healthy ledgers, every kind of finding, writes during the scan.

Ledgers are built through the API (small, transactional) or seeded straight into the tables
with BatchWriteItem (chains built by the domain's own `apply_drafts`), then corrupted
directly, the way a bug or a hand edit would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from infra.api import LocalApi
from infra.template import LOCAL_REGION
from tests.conftest import STACK, Client
from tests.integration.test_stripe_webhook import Payment, StripeSender, secret, stripe_api  # noqa: F401 (fixtures)
from tests.invariants import assert_account_consistent
from tokenledger.adapters import scan as scan_module
from tokenledger.adapters.dynamodb import entry_to_item
from tokenledger.adapters.ids import new_ulid, utc_now_iso
from tokenledger.domain.model import Account, Entry, EntryDraft, EntryType, apply_drafts

TABLES = STACK.table_names()
BUCKET = STACK.physical_name("ReportsBucket")
BATCH_WRITE_ITEMS_MAX = 25


# ---------------------------------------------------------------- helpers (test_audit.py uses them too)
def batch_write(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), BATCH_WRITE_ITEMS_MAX):
        request = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + BATCH_WRITE_ITEMS_MAX]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def account_item(account: Account) -> dict[str, Any]:
    return {
        "user_id": {"S": account.user_id},
        "balance": {"N": str(account.balance)},
        "version": {"N": str(account.version)},
        "created_at": {"S": account.created_at or utc_now_iso()},
        "updated_at": {"S": account.updated_at or utc_now_iso()},
    }


def build_chain(user_id: str, drafts: list[EntryDraft]) -> tuple[Account, list[Entry]]:
    """A correct chain, built by the domain's own rule."""
    return apply_drafts(Account(user_id=user_id), drafts, entry_ids=[new_ulid() for _ in drafts], now=utc_now_iso())


def seed_accounts(dynamodb: Any, chains: list[tuple[Account, list[Entry]]]) -> None:
    batch_write(dynamodb, TABLES["AccountsTable"], [account_item(a) for a, _ in chains])
    batch_write(dynamodb, TABLES["EntriesTable"], [entry_to_item(e) for _, es in chains for e in es])


def grant(amount: int) -> EntryDraft:
    return EntryDraft(type=EntryType.GRANT, amount=amount, counterparty="admin", reason="seed", actor="seed")


def commit(amount: int, prediction: str = "p-1") -> EntryDraft:
    return EntryDraft(
        type=EntryType.COMMITMENT, amount=-amount, counterparty=f"prediction:{prediction}", related_id=prediction
    )


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def reconcile(api: LocalApi, event: dict[str, Any] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = api.pool.invoke("ReconcileFunction", event if event is not None else {})
    return report


def s3() -> Any:
    return boto3.client("s3", region_name=LOCAL_REGION)


def read_json(key: str) -> Any:
    return json.loads(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def read_lines(key: str) -> list[dict[str, Any]]:
    body = s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


def kinds(report: dict[str, Any]) -> set[str]:
    return {f["kind"] for f in report["inconsistencies"]}


def fund(admin: Client, user_id: str, amount: int) -> None:
    response = admin.post(f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "t"})
    assert response.status == 201, response.json


def spend(api: LocalApi, user_id: str, amount: int) -> None:
    response = Client(api, user_id).post("/v1/commitments", {"prediction_id": "p-7", "amount": amount})
    assert response.status == 201, response.json


REPORT_FIELDS = {
    "run_id",
    "started_at",
    "finished_at",
    "accounts_checked",
    "entries_checked",
    "tokens_outstanding",
    "totals_by_type",
    "inconsistencies",
    "unrecovered_chargebacks",
    "healthy",
    "snapshot_key",
}


# ---------------------------------------------------------------- a healthy ledger
def test_a_healthy_ledger_reports_healthy_with_the_report_the_snapshot_and_latest(
    api: LocalApi, admin: Client, aws: Any
) -> None:
    alice, bob, carol = new_user(), new_user(), new_user()
    fund(admin, alice, 100)
    fund(admin, bob, 40)
    spend(api, alice, 30)
    spend(api, alice, 5)
    fund(admin, carol, 1)

    assert admin.get("/v1/admin/reports/latest").status == 404
    report = reconcile(api)

    assert report.keys() >= REPORT_FIELDS
    assert report["healthy"] is True and report["inconsistencies"] == []
    assert report["accounts_checked"] == 3
    assert report["entries_checked"] == 5
    assert report["tokens_outstanding"] == 65 + 40 + 1
    assert report["totals_by_type"]["grant"] == 141 and report["totals_by_type"]["commitment"] == -35
    assert set(report["totals_by_type"]) == {t.value for t in EntryType}
    assert report["unrecovered_chargebacks"] == 0
    assert report["started_at"] <= report["finished_at"]
    assert report["checks_skipped"] == []

    year, month, day = report["started_at"][:10].split("-")
    dated = f"reports/{year}/{month}/{day}/{report['run_id']}.json"
    assert read_json(dated) == report
    assert read_json("reports/latest.json") == report
    assert report["snapshot_key"].startswith(f"reports/{year}/{month}/{day}/")
    snapshot = sorted(read_lines(report["snapshot_key"]), key=lambda line: line["user_id"])

    def head(user_id: str) -> str:
        # The digest of the run: every account's head hash, the hash of its entry at `version`.
        item = aws["dynamodb"].get_item(TableName=TABLES["AccountsTable"], Key=account_key(user_id))["Item"]
        return str(item["head_hash"]["S"])

    expected = sorted(
        [
            {"user_id": alice, "balance": 65, "version": 3, "head_hash": head(alice)},
            {"user_id": bob, "balance": 40, "version": 1, "head_hash": head(bob)},
            {"user_id": carol, "balance": 1, "version": 1, "head_hash": head(carol)},
        ],
        key=lambda line: line["user_id"],
    )
    assert snapshot == expected

    latest = admin.get("/v1/admin/reports/latest")
    assert latest.status == 200 and latest.json == report
    for user_id in (alice, bob, carol):
        assert_account_consistent(aws["dynamodb"], STACK, user_id)


def test_an_empty_ledger_is_healthy(api: LocalApi) -> None:
    report = reconcile(api)
    assert report["healthy"] is True
    assert (report["accounts_checked"], report["entries_checked"], report["tokens_outstanding"]) == (0, 0, 0)
    assert read_lines(report["snapshot_key"]) == []


def test_metrics_are_published_as_emf(api: LocalApi, admin: Client, capsys: pytest.CaptureFixture[str]) -> None:
    fund(admin, new_user(), 12)
    capsys.readouterr()
    reconcile(api)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "no EMF document printed"
    document = emf[-1]
    names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"AccountsChecked", "EntriesChecked", "Findings", "IntegrityFindings", "TokensOutstanding"} <= names

    def value(name: str) -> float:
        raw = document[name]
        return float(raw[-1] if isinstance(raw, list) else raw)

    assert (value("AccountsChecked"), value("TokensOutstanding"), value("Findings")) == (1.0, 12.0, 0.0)


# ---------------------------------------------------------------- each kind of finding
def corrupt_update(dynamodb: Any, table: str, key: dict[str, Any], expression: str, values: dict[str, Any]) -> None:
    dynamodb.update_item(
        TableName=TABLES[table], Key=key, UpdateExpression=expression, ExpressionAttributeValues=values
    )


def entry_key(user_id: str, seq: int) -> dict[str, Any]:
    return {"user_id": {"S": user_id}, "seq": {"N": str(seq)}}


def account_key(user_id: str) -> dict[str, Any]:
    return {"user_id": {"S": user_id}}


Corruption = Callable[[Any, str, list[Entry]], None]


def _delete_middle_entry(db: Any, user: str, _: list[Entry]) -> None:
    db.delete_item(TableName=TABLES["EntriesTable"], Key=entry_key(user, 2))


def _bend_balance_after(db: Any, user: str, _: list[Entry]) -> None:
    corrupt_update(db, "EntriesTable", entry_key(user, 2), "SET balance_after = balance_after + :d", {":d": {"N": "5"}})


def _rewrite_history_consistently(db: Any, user: str, _: list[Entry]) -> None:
    """Seq 2 commits 10, not 20; every later balance_after and the account carried along."""
    corrupt_update(
        db,
        "EntriesTable",
        entry_key(user, 2),
        "SET amount = :a, balance_after = :b",
        {":a": {"N": "-10"}, ":b": {"N": "40"}},
    )
    corrupt_update(db, "EntriesTable", entry_key(user, 3), "SET balance_after = :b", {":b": {"N": "45"}})
    corrupt_update(db, "AccountsTable", account_key(user), "SET balance = :b", {":b": {"N": "45"}})


def _drift_balance(db: Any, user: str, _: list[Entry]) -> None:
    corrupt_update(db, "AccountsTable", account_key(user), "SET balance = balance + :d", {":d": {"N": "7"}})


def _version_ahead(db: Any, user: str, _: list[Entry]) -> None:
    corrupt_update(db, "AccountsTable", account_key(user), "SET version = version + :d", {":d": {"N": "1"}})


def _account_behind_chain(db: Any, user: str, entries: list[Entry]) -> None:
    previous = entries[-2]
    corrupt_update(
        db,
        "AccountsTable",
        account_key(user),
        "SET version = :v, balance = :b",
        {":v": {"N": str(previous.seq)}, ":b": {"N": str(previous.balance_after)}},
    )


def _negative_balance(db: Any, user: str, _: list[Entry]) -> None:
    corrupt_update(db, "AccountsTable", account_key(user), "SET balance = :b", {":b": {"N": "-5"}})


def _delete_account(db: Any, user: str, _: list[Entry]) -> None:
    db.delete_item(TableName=TABLES["AccountsTable"], Key=account_key(user))


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        (_delete_middle_entry, {"seq_gap"}),
        (_bend_balance_after, {"chain_break", "hash_mismatch"}),
        (_rewrite_history_consistently, {"hash_mismatch"}),
        (_drift_balance, {"balance_mismatch"}),
        (_version_ahead, {"version_mismatch"}),
        (_account_behind_chain, {"version_mismatch"}),
        (_negative_balance, {"negative_balance", "balance_mismatch"}),
        (_delete_account, {"orphan_entries"}),
    ],
    ids=[
        "seq_gap",
        "chain_break",
        "rewritten",
        "balance_mismatch",
        "version_ahead",
        "version_behind",
        "negative",
        "orphan",
    ],
)
def test_each_corruption_of_a_chain_is_named_on_its_account(
    api: LocalApi, aws: Any, corruption: Corruption, expected: set[str]
) -> None:
    db = aws["dynamodb"]
    victim, bystander = new_user(), new_user()
    victim_chain = build_chain(victim, [grant(50), commit(20), grant(5)])
    seed_accounts(db, [victim_chain, build_chain(bystander, [grant(9), commit(4)])])
    corruption(db, victim, victim_chain[1])

    report = reconcile(api)

    assert report["healthy"] is False
    assert kinds(report) == expected
    assert {f["user_id"] for f in report["inconsistencies"]} == {victim}
    assert all(f["detail"] for f in report["inconsistencies"])
    assert report["findings_by_kind"] == dict.fromkeys(expected, 1)


def test_an_idempotency_record_naming_a_missing_entry_is_reported(api: LocalApi, admin: Client, aws: Any) -> None:
    victim = new_user()
    fund(admin, victim, 10)
    fund(admin, new_user(), 3)
    db = aws["dynamodb"]
    records = db.scan(TableName=TABLES["IdempotencyTable"])["Items"]
    record = next(r for r in records if victim in r["response"]["S"])
    body = json.loads(record["response"]["S"])
    body["entry"]["entry_id"] = "01JNOSUCHENTRY0000000000000"
    db.update_item(
        TableName=TABLES["IdempotencyTable"],
        Key={"pk": record["pk"]},
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "response"},
        ExpressionAttributeValues={":r": {"S": json.dumps(body)}},
    )

    report = reconcile(api)

    assert kinds(report) == {"idempotency_dangling"}
    (finding,) = report["inconsistencies"]
    assert finding["user_id"] == victim and "01JNOSUCHENTRY" in finding["detail"]


# ---------------------------------------------------------------- Stripe payments (records as docs/stripe.md)
def stripe_purchase(user_id: str, *, payment_id: str, event_id: str, tokens: int = 100) -> EntryDraft:
    return EntryDraft(
        type=EntryType.PURCHASE,
        amount=tokens,
        counterparty="stripe",
        related_id=payment_id,
        metadata={"package_id": "starter", "stripe_event": event_id},
    )


def stripe_record(
    event_id: str, *, outcome: str, payment_id: str, entry: Entry | None = None, user_id: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "event_id": {"S": event_id},
        "type": {"S": "checkout.session.completed"},
        "outcome": {"S": outcome},
        "payment_id": {"S": payment_id},
        "deliveries": {"N": "1"},
    }
    if user_id or entry:
        item["user_id"] = {"S": user_id or (entry.user_id if entry else "")}
    if entry is not None:
        item["entry_id"] = {"S": entry.entry_id}
        item["entry_seq"] = {"N": str(entry.seq)}
        item["tokens"] = {"N": str(entry.amount)}
    return item


def test_purchases_and_payments_that_match_are_healthy(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    buyer = new_user()
    chain = build_chain(buyer, [stripe_purchase(buyer, payment_id="pi_1", event_id="evt_1"), commit(30)])
    seed_accounts(db, [chain])
    batch_write(
        db,
        TABLES["StripeEventsTable"],
        [stripe_record("evt_1", outcome="credited", payment_id="pi_1", entry=chain[1][0])],
    )

    report = reconcile(api)

    assert report["healthy"] is True, report["inconsistencies"]
    assert report["totals_by_type"]["purchase"] == 100


def test_a_purchase_without_its_recorded_stripe_payment_is_reported(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    buyer = new_user()
    seed_accounts(db, [build_chain(buyer, [stripe_purchase(buyer, payment_id="pi_2", event_id="evt_missing")])])

    report = reconcile(api)

    assert kinds(report) == {"purchase_without_payment"}
    (finding,) = report["inconsistencies"]
    assert finding["user_id"] == buyer and "evt_missing" in finding["detail"] and "pi_2" in finding["detail"]


def test_a_credited_payment_without_its_purchase_is_reported(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    buyer = new_user()
    ghost = build_chain(buyer, [stripe_purchase(buyer, payment_id="pi_3", event_id="evt_3")])[1][0]
    batch_write(
        db, TABLES["StripeEventsTable"], [stripe_record("evt_3", outcome="credited", payment_id="pi_3", entry=ghost)]
    )

    report = reconcile(api)

    assert kinds(report) == {"payment_without_purchase"}
    assert report["inconsistencies"][0]["user_id"] == buyer and "pi_3" in report["inconsistencies"][0]["detail"]


def test_a_paid_payment_refused_for_an_unknown_package_is_reported_until_credited(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    buyer = new_user()
    batch_write(
        db,
        TABLES["StripeEventsTable"],
        [stripe_record("evt_4", outcome="unknown_package", payment_id="pi_4", user_id=buyer)],
    )
    report = reconcile(api)
    assert kinds(report) == {"payment_without_purchase"}
    assert "unknown_package" in report["inconsistencies"][0]["detail"]

    # Credited later (e.g. the other session event, after the catalog was fixed): nothing to report.
    chain = build_chain(buyer, [stripe_purchase(buyer, payment_id="pi_4", event_id="evt_5")])
    seed_accounts(db, [chain])
    batch_write(  # the payment's exactly-once record, written with the purchase
        db,
        TABLES["IdempotencyTable"],
        [
            {
                "pk": {"S": "idem|purchase|stripe|pi_4"},
                "request_hash": {"S": "h"},
                "status": {"N": "200"},
                "response": {"S": json.dumps({"entry": chain[1][0].to_api(), "balance": 100})},
            }
        ],
    )
    batch_write(
        db,
        TABLES["StripeEventsTable"],
        [stripe_record("evt_5", outcome="credited", payment_id="pi_4", entry=chain[1][0])],
    )
    assert reconcile(api)["healthy"] is True


def test_unrecovered_chargebacks_are_reported_without_making_the_run_unhealthy(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    buyer = new_user()
    chain = build_chain(
        buyer,
        [
            stripe_purchase(buyer, payment_id="pi_6", event_id="evt_6"),
            commit(90),
            EntryDraft(type=EntryType.CHARGEBACK, amount=-10, counterparty="stripe", related_id="pi_6", unrecovered=90),
        ],
    )
    seed_accounts(db, [chain])
    batch_write(
        db,
        TABLES["StripeEventsTable"],
        [stripe_record("evt_6", outcome="credited", payment_id="pi_6", entry=chain[1][0])],
    )

    report = reconcile(api)

    assert report["unrecovered_chargebacks"] == 90
    assert kinds(report) == {"unrecovered_chargeback"}
    assert report["healthy"] is True


def test_stripe_purchases_refunds_and_disputes_from_the_real_webhook_reconcile(
    api: LocalApi,
    stripe_api: StripeSender,  # noqa: F811 - the Stripe tests' fixture, imported above
    aws: Any,
) -> None:
    buyer, refunded, refused, mispriced = new_user(), new_user(), new_user(), new_user()
    disputed = Payment(buyer)  # standard: 550 tokens
    assert stripe_api.send(disputed.completed()).status == 200
    assert stripe_api.send(disputed.async_succeeded()).status == 200  # the other session event: credits nothing
    spend(api, buyer, 500)
    assert stripe_api.send(disputed.disputed()).status == 200  # 550 due, 50 left: 500 unrecovered
    partly = Payment(refunded)
    assert stripe_api.send(partly.completed()).status == 200
    assert stripe_api.send(partly.refunded(1000)).status == 200
    assert reconcile(api)["healthy"] is True
    assert stripe_api.send(Payment(refused, package_id="no-such-pack").completed()).status == 200
    assert stripe_api.send(Payment(mispriced, package_id="whale", amount=1).completed()).status == 200

    report = reconcile(api)

    assert report["totals_by_type"]["purchase"] == 1100
    assert report["unrecovered_chargebacks"] == 500
    assert {(f["user_id"], f["kind"]) for f in report["inconsistencies"]} == {
        (buyer, "unrecovered_chargeback"),
        (refused, "payment_without_purchase"),
        (mispriced, "price_mismatch"),
    }
    assert report["checks_skipped"] == []
    for user_id in (buyer, refunded):
        assert_account_consistent(aws["dynamodb"], STACK, user_id)


# ---------------------------------------------------------------- a consistent cut without locks
@pytest.fixture
def writes_between_pages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Callable[[], None]]]:
    """Scan one item per page and run the queued writes between pages, while the scan goes on."""
    queued: list[Callable[[], None]] = []
    original = scan_module.parallel_scan

    def scan_with_writes(*args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        kwargs["page_items_max"] = 1
        for page in original(*args, **kwargs):
            yield page
            if queued:
                queued.pop(0)()

    monkeypatch.setattr(scan_module, "parallel_scan", scan_with_writes)
    yield queued


def test_writes_during_the_scan_raise_no_finding(
    api: LocalApi, admin: Client, aws: Any, writes_between_pages: list[Callable[[], None]]
) -> None:
    users = [new_user() for _ in range(6)]
    for user_id in users:
        fund(admin, user_id, 100)
    for user_id in users[:3]:
        spend(api, user_id, 10)
    newcomers = [new_user() for _ in range(3)]
    done: list[str] = []

    def write(action: Callable[[], None], label: str) -> Callable[[], None]:
        def run() -> None:
            action()
            done.append(label)

        return run

    for round_no in range(4):
        for user_id in users:
            writes_between_pages.append(write(lambda u=user_id: spend(api, u, 1), f"spend {round_no}"))
        writes_between_pages.append(write(lambda u=newcomers[round_no % 3]: fund(admin, u, 5), f"open {round_no}"))
        writes_between_pages.append(write(lambda u=users[round_no]: fund(admin, u, 2), f"grant {round_no}"))

    report = reconcile(api)

    assert len(done) == 32, f"only {len(done)} of 32 writes landed during the scan"
    assert report["inconsistencies"] == [] and report["healthy"] is True
    for user_id in users + newcomers:
        assert_account_consistent(aws["dynamodb"], STACK, user_id)
    # And the ledger those writes left behind is itself healthy.
    writes_between_pages.clear()
    after = reconcile(api)
    assert after["healthy"] is True and after["accounts_checked"] == 9


# ---------------------------------------------------------------- fan-out: plan, audit ranges, merge
def test_a_fanned_out_run_reports_what_a_single_run_reports(api: LocalApi, aws: Any) -> None:
    db = aws["dynamodb"]
    chains = [build_chain(new_user(), [grant(10 + i), commit(i + 1)]) for i in range(12)]
    seed_accounts(db, chains)
    _drift_balance(db, chains[0][0].user_id, chains[0][1])

    single = reconcile(api)
    plan = reconcile(api, {"action": "plan", "ranges": 3})
    assert [r["end"] - r["start"] for r in plan["ranges"]] == [len(range(r["start"], r["end"])) for r in plan["ranges"]]
    assert plan["ranges"][0]["start"] == 0 and plan["ranges"][-1]["end"] == plan["total_segments"]
    parts = [
        reconcile(api, {"action": "audit", "run_id": plan["run_id"], "total_segments": plan["total_segments"], **r})
        for r in plan["ranges"]
    ]
    assert sum(p["accounts_checked"] for p in parts) == 12
    merged = reconcile(
        api, {"action": "merge", "run_id": plan["run_id"], "started_at": plan["started_at"], "ranges": plan["ranges"]}
    )

    for field in ("accounts_checked", "entries_checked", "tokens_outstanding", "totals_by_type", "inconsistencies"):
        assert merged[field] == single[field], field
    assert merged["run_id"] == plan["run_id"] and merged["healthy"] is False
    assert read_json("reports/latest.json") == merged
    assert sorted(line["user_id"] for line in read_lines(merged["snapshot_key"])) == sorted(
        a.user_id for a, _ in chains
    )


def test_the_state_machine_in_the_template_drives_plan_audit_and_merge() -> None:
    machine = STACK.resources["ReconcileStateMachine"]["Properties"]
    states = machine["Definition"]["States"]
    assert states["Plan"]["Parameters"]["action"] == "plan"
    assert states["AuditRanges"]["Type"] == "Map" and states["AuditRanges"]["ItemsPath"] == "$.ranges"
    assert states["AuditRanges"]["ItemSelector"]["action"] == "audit"
    assert states["Merge"]["Parameters"]["action"] == "merge"
    assert machine["DefinitionSubstitutions"]["ReconcileFunctionArn"] == {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}


# ---------------------------------------------------------------- failing loudly, on its own errors only
def test_the_function_fails_when_it_cannot_write_its_report(api: LocalApi, admin: Client) -> None:
    fund(admin, new_user(), 1)
    bucket = s3()
    for version in bucket.list_object_versions(Bucket=BUCKET).get("Versions", []):
        bucket.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    bucket.delete_bucket(Bucket=BUCKET)
    with pytest.raises(Exception, match="NoSuchBucket"):
        reconcile(api)
