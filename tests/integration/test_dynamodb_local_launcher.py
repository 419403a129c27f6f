"""The DynamoDB Local launcher starts a real server, serves requests, and cleans up."""

from __future__ import annotations

import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest
from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

from infra.dynamodb_local import DynamoDBLocal, find_installed

_MISSING = [
    tool
    for tool, needed in (("java", True), ("npm", find_installed() is None))
    if needed and shutil.which(tool) is None
]

pytestmark = [
    pytest.mark.dynamodb_local,
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"DynamoDB Local needs {' and '.join(_MISSING)} on PATH",
    ),
]


def _client(endpoint_url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="dummy",
        aws_secret_access_key="dummy",
        config=Config(connect_timeout=2, read_timeout=10, retries={"total_max_attempts": 1}),
    )


def _create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})


def _port_accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _port_can_be_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
        return True


def test_started_server_creates_table_and_round_trips_an_item() -> None:
    table = f"launcher-{uuid.uuid4().hex[:12]}"
    with DynamoDBLocal() as ddb:
        assert ddb.endpoint_url.startswith("http://127.0.0.1:")
        client = _client(ddb.endpoint_url)
        _create_table(client, table)

        client.put_item(
            TableName=table,
            Item={"pk": {"S": "acct#1"}, "balance": {"N": "1500"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
        got = client.get_item(TableName=table, Key={"pk": {"S": "acct#1"}}, ConsistentRead=True)

        assert got["Item"] == {"pk": {"S": "acct#1"}, "balance": {"N": "1500"}}
        assert table in client.list_tables(Limit=100)["TableNames"]


def test_stopping_ends_the_process_and_frees_the_port() -> None:
    ddb = DynamoDBLocal().start()
    try:
        port = ddb.port
        assert port is not None
        assert ddb.running
        assert _port_accepts_connections(port)
    finally:
        ddb.stop()

    assert not ddb.running
    assert ddb.port is None
    assert not _port_accepts_connections(port)
    assert _port_can_be_bound(port)


def test_data_dir_keeps_tables_and_items_between_runs(tmp_path: Path) -> None:
    table = f"launcher-{uuid.uuid4().hex[:12]}"
    data_dir = tmp_path / "ddb-data"

    with DynamoDBLocal(data_dir=data_dir) as first:
        client = _client(first.endpoint_url)
        _create_table(client, table)
        client.put_item(TableName=table, Item={"pk": {"S": "kept"}, "v": {"N": "7"}})

    with DynamoDBLocal(data_dir=data_dir) as second:
        got = _client(second.endpoint_url).get_item(TableName=table, Key={"pk": {"S": "kept"}}, ConsistentRead=True)

    assert got["Item"] == {"pk": {"S": "kept"}, "v": {"N": "7"}}
