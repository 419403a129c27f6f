"""Both engines: where DynamoDB calls go, and ClientRequestToken on every transaction.

Run on moto (default) and on DynamoDB Local (`TOKENLEDGER_ENGINE=dynamodb-local`). The
token tests assert the same user-visible outcome on both (tokens move once) and show who
absorbed the duplicate: DynamoDB itself (DynamoDB Local honours the token) or, on moto,
which ignores the token, our own idempotency record. See docs/engines.md.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.endpoint import Endpoint
from botocore.exceptions import ClientError, ReadTimeoutError

from infra.template import LOCAL_REGION, REPO_ROOT
from tests.conftest import ENGINE_DYNAMODB_LOCAL, ENGINE_MOTO, STACK, Client
from tests.invariants import assert_account_consistent
from tokenledger.adapters.dynamodb import DynamoLedgerRepository
from tokenledger.domain.model import Account, EntryDraft, EntryType, apply_drafts
from tokenledger.service.ports import AccountWrite, IdempotencyClaim, StoredResponse, TransactionRefused

TOKEN_CHARS_MAX = 36  # DynamoDB's limit on ClientRequestToken
TRANSACT = "TransactWriteItems"


def _table(logical_id: str) -> str:
    return STACK.physical_name(logical_id)


@pytest.fixture
def sent_transactions(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every TransactWriteItems any client makes, as our code passed them.

    Recorded before botocore fills in its own random token, so a token seen here is ours.
    """
    sent: list[dict[str, Any]] = []
    original = BaseClient._make_api_call

    def recording(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        if operation_name == TRANSACT:
            sent.append(dict(api_params))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return sent


class LostResponse:
    """Once armed, the next TransactWriteItems is applied but its response is lost (a read timeout).

    botocore then resends the identical request, token included, as after a real timeout.
    `bodies` holds the request body of every TransactWriteItems attempt since arming.
    """

    def __init__(self) -> None:
        self.armed = False
        self.bodies: list[bytes] = []

    def arm(self) -> None:
        self.armed = True
        self.bodies.clear()


@pytest.fixture
def lost_response(monkeypatch: pytest.MonkeyPatch) -> LostResponse:
    fault = LostResponse()
    original = Endpoint._do_get_response

    def losing(self: Endpoint, request: Any, operation_model: Any, context: Any) -> Any:
        result = original(self, request, operation_model, context)
        if operation_model.name != TRANSACT:
            return result
        fault.bodies.append(bytes(request.body))
        if fault.armed:
            fault.armed = False
            return None, ReadTimeoutError(endpoint_url=request.url)
        return result

    monkeypatch.setattr(Endpoint, "_do_get_response", losing)
    return fault


def _grant(admin: Client, user_id: str, amount: int) -> None:
    response = admin.post(
        f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "engine test"}
    )
    assert response.status == 201, response.body


# ---------------------------------------------------------------- where calls go
def test_dynamodb_calls_reach_the_selected_engine_and_s3_stays_on_moto(
    aws: dict[str, Any], engine: str, dynamodb_endpoint: str | None
) -> None:
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    moto_tables = get_backend("dynamodb")[DEFAULT_ACCOUNT_ID][LOCAL_REGION].tables
    template_tables = set(STACK.table_names().values())
    dynamodb = boto3.client("dynamodb", region_name=LOCAL_REGION)

    listed = set(dynamodb.list_tables()["TableNames"])

    assert listed == template_tables
    if engine == ENGINE_MOTO:
        assert dynamodb_endpoint is None
        assert set(moto_tables) == template_tables
    else:
        assert dynamodb.meta.endpoint_url == dynamodb_endpoint
        assert not moto_tables, "on DynamoDB Local, moto must hold no DynamoDB table"
    bucket = f"engine-check-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", region_name=LOCAL_REGION).create_bucket(Bucket=bucket)
    assert bucket in get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"].buckets


def test_each_test_starts_with_empty_tables(aws: dict[str, Any]) -> None:
    dynamodb = aws["dynamodb"]
    for definition in STACK.table_definitions().values():
        assert dynamodb.scan(TableName=definition["TableName"], Limit=1)["Items"] == []


# ---------------------------------------------------------------- ClientRequestToken
def test_every_transaction_the_api_sends_carries_a_client_request_token(
    sent_transactions: list[dict[str, Any]], admin: Client, user: Client, aws: dict[str, Any]
) -> None:
    _grant(admin, user.sub or "", 100)
    committed = user.post("/v1/commitments", {"prediction_id": "p-tok", "amount": 30}, key="tok-1")
    replayed = user.post("/v1/commitments", {"prediction_id": "p-tok", "amount": 30}, key="tok-1")
    refused = user.post("/v1/commitments", {"prediction_id": "p-tok", "amount": 1000})
    adjusted = admin.post(
        f"/v1/admin/accounts/{user.sub}/entries", {"type": "adjustment", "amount": -5, "reason": "engine test"}
    )
    batch = admin.post(
        "/v1/admin/batches",
        {"operations": [{"user_id": user.sub, "type": "grant", "amount": 7}], "reason": "engine test"},
    )
    reversed_ = admin.post(f"/v1/admin/entries/{committed.json['entry']['entry_id']}/reversal", {"reason": "void"})

    statuses = [committed.status, replayed.status, refused.status, adjusted.status, batch.status, reversed_.status]
    assert statuses == [201, 201, 409, 201, 201, 201]
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert len(sent_transactions) >= 6
    tokens = [params.get("ClientRequestToken") for params in sent_transactions]
    assert all(isinstance(t, str) and 1 <= len(t) <= TOKEN_CHARS_MAX for t in tokens), tokens
    assert len(set(tokens)) == len(tokens), "different transactions must carry different tokens"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub or "") == {
        "balance": 100 - 30 - 5 + 7 + 30,
        "version": 5,
        "entries": 5,
    }


def test_the_repository_is_the_only_code_that_sends_transactions() -> None:
    """So the token check on `DynamoLedgerRepository.commit` covers every transaction we send."""
    senders = {
        str(path.relative_to(REPO_ROOT)): path.read_text(encoding="utf-8").count("transact_write_items")
        for folder in ("shared", "functions")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if "transact_write_items" in path.read_text(encoding="utf-8")
    }

    assert senders == {"shared/tokenledger/adapters/dynamodb.py": 1}


def test_a_retry_after_a_lost_response_moves_tokens_once(
    admin: Client, user: Client, aws: dict[str, Any], engine: str, lost_response: LostResponse
) -> None:
    """The commit is applied, its response lost; botocore resends the same request and token."""
    _grant(admin, user.sub or "", 100)
    lost_response.arm()

    response = user.post("/v1/commitments", {"prediction_id": "p-lost", "amount": 30})

    assert response.status == 201, response.body
    assert len(lost_response.bodies) == 2
    assert lost_response.bodies[0] == lost_response.bodies[1], "the retry resends the same items and token"
    assert response.json["balance"] == 70
    if engine == ENGINE_DYNAMODB_LOCAL:
        # DynamoDB saw the same ClientRequestToken again and answered success without applying it twice.
        assert "idempotent-replayed" not in response.headers
    else:
        # moto ignores the token: the resent transaction is cancelled, our idempotency record answers.
        assert response.headers.get("idempotent-replayed") == "true"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub or "") == {
        "balance": 70,
        "version": 2,
        "entries": 2,
    }


def _first_grant(user_id: str, amount: int) -> tuple[list[AccountWrite], IdempotencyClaim]:
    before = Account(user_id=user_id)
    draft = EntryDraft(type=EntryType.GRANT, amount=amount, counterparty="admin", reason="engine test", actor="t")
    after, entries = apply_drafts(before, [draft], entry_ids=[f"e-{uuid.uuid4().hex}"], now="2026-11-25T12:00:00.000Z")
    claim = IdempotencyClaim(
        pk=f"idem|engine-test|{user_id}|{uuid.uuid4().hex}",
        response=StoredResponse(request_hash="h", body={"balance": amount}),
        expires_at=None,
    )
    return [AccountWrite(before=before, after=after, entries=entries)], claim


def test_the_same_transaction_sent_twice_is_applied_once(
    aws: dict[str, Any], engine: str, sent_transactions: list[dict[str, Any]], user_id: str
) -> None:
    repo = DynamoLedgerRepository(
        aws["dynamodb"],
        accounts_table=_table("AccountsTable"),
        entries_table=_table("EntriesTable"),
        idempotency_table=_table("IdempotencyTable"),
    )
    writes, claim = _first_grant(user_id, 40)

    repo.commit(writes, idempotency=claim)
    if engine == ENGINE_DYNAMODB_LOCAL:
        repo.commit(writes, idempotency=claim)  # accepted: DynamoDB recognises the token
    else:
        with pytest.raises(TransactionRefused) as refused:
            repo.commit(writes, idempotency=claim)
        assert refused.value.replay == claim.response  # moto re-ran it; our record says "already done"

    first, second = (params["ClientRequestToken"] for params in sent_transactions)
    assert first == second
    assert assert_account_consistent(aws["dynamodb"], STACK, user_id) == {"balance": 40, "version": 1, "entries": 1}


def test_a_token_reused_for_other_items_is_refused_only_by_dynamodb(aws: dict[str, Any], engine: str) -> None:
    dynamodb = aws["dynamodb"]
    table = _table("IdempotencyTable")
    token = uuid.uuid4().hex

    def put(pk: str) -> None:
        dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": table, "Item": {"pk": {"S": pk}}}}], ClientRequestToken=token
        )

    put("engine-a")
    if engine == ENGINE_DYNAMODB_LOCAL:
        with pytest.raises(ClientError) as error:
            put("engine-b")
        assert error.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
        expected = {"engine-a"}
    else:
        put("engine-b")  # moto ignores the token
        expected = {"engine-a", "engine-b"}
    found = {i["pk"]["S"] for i in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]}
    assert found == expected
