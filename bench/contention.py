"""Contention: N concurrent writers, each with its own warm environment, on one or N accounts.

Each writer is a thread with its own `Environment` of the writes function (Lambda gives each
concurrent request its own environment) and commits `writes_per_writer` tokens one at a
time, without `If-Match`, as fast as it can. moto is made atomic per request
(`make_moto_atomic`), as DynamoDB is. Reported per run: goodput (successful writes per
second of wall time: moto-bound, compare runs with each other, not with AWS), retries per
successful write (`Ledger.last_write_attempts - 1`), the most attempts any write used against
the bound `WRITE_ATTEMPTS_MAX`, and the refusals (409 `contention` once the bound is spent).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from bench.harness import STACK, World, idem_key, new_id
from tokenledger.service.ledger import WRITE_ATTEMPTS_MAX

WRITER_COUNTS = (1, 4, 8, 16)
SEED_TOKENS = 1_000


def run(world: World, *, writes_per_writer: int) -> list[dict[str, Any]]:
    from infra.invariants import chain_of

    writers_max = max(WRITER_COUNTS)
    envs = [world.environment_for("POST", "/v1/commitments") for _ in range(writers_max)]
    admin_env = world.environment_for("POST", "/v1/admin/accounts/x/entries")
    rows = []
    for shared in (True, False):
        for writers in WRITER_COUNTS:
            users = [new_id("u")] if shared else [new_id("u") for _ in range(writers)]
            for user in users:
                world.call(
                    admin_env,
                    "POST",
                    f"/v1/admin/accounts/{user}/entries",
                    sub="bench-admin",
                    groups=["admin"],
                    body={"type": "grant", "amount": SEED_TOKENS, "reason": "bench seed"},
                    headers={"idempotency-key": idem_key()},
                )
            row = _one_run(world, envs[:writers], users, writes_per_writer)
            # The ledger's own invariants, straight from the table, after the storm.
            balance_ok = True
            for user in users:
                chain = chain_of(world.oracle, STACK, user)
                running = 0
                for entry in chain:
                    running += entry["amount"]
                    balance_ok &= entry["balance_after"] == running and running >= 0
                balance_ok &= [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
            debited = len(users) * SEED_TOKENS - sum(_balance(world, u) for u in users)
            row["invariants_hold"] = bool(balance_ok and debited == row["succeeded"])
            rows.append(row)
    return rows


def _balance(world: World, user: str) -> int:
    table = STACK.physical_name("AccountsTable")
    item = world.oracle.get_item(TableName=table, Key={"user_id": {"S": user}}, ConsistentRead=True)["Item"]
    return int(item["balance"]["N"])


def _one_run(world: World, envs: list[Any], users: list[str], writes_per_writer: int) -> dict[str, Any]:
    writers = len(envs)
    barrier = threading.Barrier(writers + 1)
    attempts: list[int] = []  # per successful write
    every_attempt: list[int] = []  # per write, refused ones included
    refusals: Counter[str] = Counter()
    lock = threading.Lock()

    def writer(index: int) -> None:
        env = envs[index]
        user = users[index % len(users)]
        barrier.wait()
        for _ in range(writes_per_writer):
            reply = world.call(
                env,
                "POST",
                "/v1/commitments",
                sub=user,
                body={"prediction_id": new_id("p"), "amount": 1},
                headers={"idempotency-key": idem_key()},
            )
            used = int(env.module.ledger.last_write_attempts)
            with lock:
                every_attempt.append(used)
                if reply.status == 201:
                    attempts.append(used)
                else:
                    code = reply.json.get("code", str(reply.status)) if isinstance(reply.json, dict) else reply.status
                    refusals[f"{reply.status} {code}"] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    succeeded = len(attempts)
    return {
        "writers": writers,
        "accounts": len(users),
        "writes": writers * writes_per_writer,
        "succeeded": succeeded,
        "failed": sum(refusals.values()),
        "refusals": dict(refusals),
        "goodput_per_s": round(succeeded / elapsed, 1) if elapsed else 0.0,
        "retries_per_write": round(sum(a - 1 for a in attempts) / succeeded, 3) if succeeded else None,
        "attempts_max_seen": max(every_attempt, default=0),
        "attempts_bound": WRITE_ATTEMPTS_MAX,
        "bound_holds": max(every_attempt, default=0) <= WRITE_ATTEMPTS_MAX,
        "seconds": round(elapsed, 2),
    }
