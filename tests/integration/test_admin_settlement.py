"""Settling a prediction in chunks: a crash mid-way resumes without paying anyone twice (moto)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from infra import settle
from tests.conftest import STACK
from tests.invariants import assert_account_consistent, chain_of
from tokenledger.config import build_ledger_from_env
from tokenledger.domain.errors import IdempotencyKeyReused
from tokenledger.domain.model import EntryType
from tokenledger.service.admin import AdminOperations, BatchOperation, Settlement
from tokenledger.service.ports import LedgerRepository


class SimulatedCrash(Exception):
    pass


class CrashAfterCommits:
    """The real repository, but the process dies right after its n-th transaction commits."""

    def __init__(self, repo: LedgerRepository, commits_before_crash: int) -> None:
        self.repo = repo
        self.commits_left = commits_before_crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    def commit(self, *args: Any, **kwargs: Any) -> None:
        self.repo.commit(*args, **kwargs)
        self.commits_left -= 1
        if self.commits_left == 0:
            raise SimulatedCrash("the operator's laptop lost power after the write, before the answer")


def payouts(prediction_id: str, users: list[str]) -> list[BatchOperation]:
    amounts = [10 + i for i in range(len(users))]
    operations = [
        BatchOperation(user_id=u, type=EntryType.PAYOUT, amount=a, related_id=prediction_id)
        for u, a in zip(users, amounts, strict=True)
    ]
    # The first user wins twice: once in the same chunk, once in a later one.
    operations.insert(1, BatchOperation(user_id=users[0], type=EntryType.PAYOUT, amount=5, related_id=prediction_id))
    operations.append(BatchOperation(user_id=users[0], type=EntryType.REFUND, amount=7, related_id=prediction_id))
    return operations


def expected_balances(operations: list[BatchOperation]) -> Counter[str]:
    owed: Counter[str] = Counter()
    for op in operations:
        owed[op.user_id] += op.amount
    return owed


def settlement(admin: AdminOperations, operations: list[BatchOperation], prediction_id: str) -> Settlement:
    return Settlement(
        admin,
        prediction_id=prediction_id,
        operations=operations,
        actor="ops:test",
        reason=f"{prediction_id} resolved",
        chunk_size=3,
    )


def test_a_settlement_resumed_after_a_crash_pays_nobody_twice(aws: Any) -> None:
    prediction_id = f"p-{uuid.uuid4().hex[:8]}"
    users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(10)]
    operations = payouts(prediction_id, users)  # 12 payouts: 4 chunks of 3

    crashing = AdminOperations(build_ledger_from_env())
    crashing.ledger.repo = CrashAfterCommits(crashing.ledger.repo, commits_before_crash=2)
    with pytest.raises(SimulatedCrash):
        settlement(crashing, operations, prediction_id).run()

    restarted = AdminOperations(build_ledger_from_env())
    plan = settlement(restarted, operations, prediction_id)
    assert plan.progress() == {
        "settlement_id": prediction_id,
        "chunks_total": 4,
        "chunks_done": 2,
        "chunks_pending": [2, 3],
    }
    outcomes: list[tuple[int, bool]] = []
    report = plan.run(on_chunk=lambda o: outcomes.append((o.index, o.written)))

    assert outcomes == [(0, False), (1, False), (2, True), (3, True)]
    assert (report.chunks_written, report.chunks_already_done, report.operations) == (2, 2, 12)
    assert report.tokens == sum(op.amount for op in operations)
    for user_id, owed in expected_balances(operations).items():
        state = assert_account_consistent(aws["dynamodb"], STACK, user_id)
        assert state["balance"] == owed, user_id
    assert len(chain_of(aws["dynamodb"], STACK, users[0])) == 3
    assert all(len(chain_of(aws["dynamodb"], STACK, u)) == 1 for u in users[1:])

    # Running it a third time writes nothing at all.
    again = settlement(AdminOperations(build_ledger_from_env()), operations, prediction_id).run()
    assert (again.chunks_written, again.chunks_already_done) == (0, 4)
    assert (
        assert_account_consistent(aws["dynamodb"], STACK, users[0])["balance"]
        == expected_balances(operations)[users[0]]
    )


def test_a_chunk_written_just_before_a_crash_is_replayed_not_repaid(aws: Any) -> None:
    prediction_id = f"p-{uuid.uuid4().hex[:8]}"
    users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    operations = payouts(prediction_id, users)
    crashing = AdminOperations(build_ledger_from_env())
    crashing.ledger.repo = CrashAfterCommits(crashing.ledger.repo, commits_before_crash=1)
    with pytest.raises(SimulatedCrash):
        settlement(crashing, operations, prediction_id).run()

    # Even a run that does not consult the progress first is answered from chunk 0's record.
    admin = AdminOperations(build_ledger_from_env())
    plan = settlement(admin, operations, prediction_id)
    replay = admin.write_operations(
        plan.chunk(0), actor="ops:test", reason=plan.reason, scope=plan.scope(0), idempotency_ttl_s=None
    )
    assert replay.replayed
    plan.run()
    for user_id, owed in expected_balances(operations).items():
        assert assert_account_consistent(aws["dynamodb"], STACK, user_id)["balance"] == owed


def test_resuming_with_a_different_payout_list_is_refused(aws: Any) -> None:
    prediction_id = f"p-{uuid.uuid4().hex[:8]}"
    users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    operations = payouts(prediction_id, users)
    crashing = AdminOperations(build_ledger_from_env())
    crashing.ledger.repo = CrashAfterCommits(crashing.ledger.repo, commits_before_crash=1)
    with pytest.raises(SimulatedCrash):
        settlement(crashing, operations, prediction_id).run()

    changed = [*operations[:-1], BatchOperation(users[1], EntryType.PAYOUT, 999, related_id=prediction_id)]
    with pytest.raises(IdempotencyKeyReused):
        settlement(AdminOperations(build_ledger_from_env()), changed, prediction_id).run()
    # Chunk 0 (written before the crash) paid users[1] its 11; the changed list paid nothing more.
    assert assert_account_consistent(aws["dynamodb"], STACK, users[1]) == {"balance": 11, "version": 1, "entries": 1}
    assert assert_account_consistent(aws["dynamodb"], STACK, users[3])["version"] == 0


# ---------------------------------------------------------------------- the command line
def write_csv(path: Path, rows: list[tuple[str, int]], header: str = "user_id,amount") -> Path:
    path.write_text(header + "\n" + "".join(f"{u},{a}\n" for u, a in rows), encoding="utf-8")
    return path


def test_the_command_settles_and_a_second_run_writes_nothing(
    aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    payouts_file = write_csv(tmp_path / "payouts.csv", [(u, 20) for u in users])
    argv = ["p-cli", "--payouts", str(payouts_file), "--actor", "ops:alice", "--reason", "resolved", "--json"]

    assert settle.main([*argv, "--chunk-size", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["chunks_total"], first["chunks_written"], first["tokens"]) == (3, 3, 100)

    assert settle.main([*argv, "--chunk-size", "2"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["chunks_written"], second["chunks_already_done"]) == (0, 3)
    for user_id in users:
        assert assert_account_consistent(aws["dynamodb"], STACK, user_id) == {"balance": 20, "version": 1, "entries": 1}

    # The chunk size is part of the plan: changing it under the same settlement is refused.
    assert settle.main([*argv, "--chunk-size", "3"]) == 1
    assert "idempotency_key_reused" in capsys.readouterr().err


def test_the_command_refuses_a_bad_file(aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["p-bad", "--actor", "ops:alice", "--reason", "r"]
    cases = {
        "negative.csv": ("user_id,amount", [("u-1", -5)]),
        "header.csv": ("user,amount", [("u-1", 5)]),
        "bad-id.csv": ("user_id,amount", [("not an id", 5)]),
        "type.csv": ("user_id,amount,type", [("u-1", 5)]),  # empty type column: payout
    }
    codes = {}
    for name, (header, rows) in cases.items():
        codes[name] = settle.main([*base, "--payouts", str(write_csv(tmp_path / name, rows, header))])
    assert codes == {"negative.csv": 2, "header.csv": 2, "bad-id.csv": 2, "type.csv": 0}
    for size in ("0", "50", "x"):
        with pytest.raises(SystemExit) as usage:
            settle.main([*base, "--payouts", str(tmp_path / "type.csv"), "--chunk-size", size])
        assert usage.value.code == 2
    refund = write_csv(tmp_path / "commitment.csv", [("u-2", 5)], "user_id,amount,type")
    refund.write_text("user_id,amount,type\nu-2,5,commitment\n", encoding="utf-8")
    assert settle.main([*base, "--payouts", str(refund)]) == 2
    assert "payout or refund" in capsys.readouterr().err


def test_the_ops_cli_offers_the_settle_subcommand() -> None:
    cli = pytest.importorskip("infra.cli")
    args = cli.build_parser().parse_args(
        ["settle", "p-9", "--payouts", "f.csv", "--actor", "ops:alice", "--reason", "resolved"]
    )
    assert args.func is settle.run and args.chunk_size == settle.BATCH_OPERATIONS_MAX
