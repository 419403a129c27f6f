"""Audit: what the scheduled reconciliation costs per entry, and how its core scales.

- `cost_per_entry`: the real ReconcileFunction on the benchmark's moto world, every DynamoDB
  call counted (its scan threads included), divided by the entries it checked.
- `scaling`: the reconciliation core (`tokenledger.service.reconcile.fleet.Reconciler`) fed by a fast
  in-memory source of pages, in a fresh process per size, so the larger sizes (up to 1,000,000
  entries) fit in seconds; moto would scan about 3,000 items/s. Peak memory is the growth of
  the process's peak resident set size during the run (Linux `VmHWM`, reset just before it),
  so it is the real high-water mark, not a sample. Accounts stay fixed while entries grow (memory should stay
  flat), then accounts grow at a fixed entry count (memory should follow them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra.template import REPO_ROOT

PAGE_ITEMS = 1_000  # about what one 1 MB scan page of ~300-byte entries holds
FUNCTION = "ReconcileFunction"


# ---------------------------------------------------------------------- cost on moto
SEED_ACCOUNTS = 25
SEED_ENTRIES_PER_ACCOUNT = 40


def seed(world: Any, *, accounts: int = SEED_ACCOUNTS, per_account: int = SEED_ENTRIES_PER_ACCOUNT) -> None:
    """Consistent accounts and chains written straight to the tables (BatchWriteItem, not counted)."""
    from bench.harness import STACK, new_id
    from tokenledger.adapters.dynamodb import entry_to_item
    from tokenledger.adapters.ids import new_ulid
    from tokenledger.domain.model import Entry, EntryType

    tables = STACK.table_names()
    created = "2026-11-24T12:00:00.000Z"
    requests: list[tuple[str, dict[str, Any]]] = []
    for _ in range(accounts):
        user = new_id("audit")
        for seq in range(1, per_account + 1):
            entry = Entry(
                entry_id=new_ulid(),
                user_id=user,
                seq=seq,
                type=EntryType.GRANT,
                amount=10,
                balance_after=10 * seq,
                counterparty="admin",
                related_id=None,
                metadata={},
                created_at=created,
                reason="bench seed",
                actor="bench",
            )
            requests.append((tables["EntriesTable"], entry_to_item(entry)))
        account = {
            "user_id": {"S": user},
            "balance": {"N": str(10 * per_account)},
            "version": {"N": str(per_account)},
            "created_at": {"S": created},
            "updated_at": {"S": created},
        }
        requests.append((tables["AccountsTable"], account))
    for start in range(0, len(requests), 25):
        batch: dict[str, list[dict[str, Any]]] = {}
        for table, item in requests[start : start + 25]:
            batch.setdefault(table, []).append({"PutRequest": {"Item": item}})
        while batch:
            batch = world.oracle.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}


def cost_per_entry(world: Any) -> dict[str, Any] | str:
    if FUNCTION not in world.functions:
        return "the reconcile function is not in template.yaml yet"
    seed(world)
    env = world.environment(FUNCTION)
    with world.recorder.record(all_threads=True) as tally, contextlib.redirect_stdout(io.StringIO()):
        report = env.invoke({})
    entries = int(report.get("entries_checked", 0))
    accounts = int(report.get("accounts_checked", 0))
    summary = tally.summary()
    summary.pop("calls", None)
    by_operation: dict[str, int] = {}
    for call in tally.calls:
        by_operation[call.operation] = by_operation.get(call.operation, 0) + 1
    summary.update(
        {
            "calls_by_operation": by_operation,
            "entries_checked": entries,
            "accounts_checked": accounts,
            "healthy": report.get("healthy"),
            "read_units_per_entry": round(tally.total("read_units") / entries, 4) if entries else None,
            "note": f"one whole run over {accounts} accounts, {entries} entries (the other operations' "
            f"plus {SEED_ACCOUNTS} x {SEED_ENTRIES_PER_ACCOUNT} seeded); eventually consistent scans, "
            "0.5 RCU per 4 KB of items read",
        }
    )
    return summary


# ---------------------------------------------------------------------- scaling, in memory
class _Probe:
    """Exact reads for re-checks; never needed on a consistent ledger (counted if it is)."""

    def __init__(self) -> None:
        self.calls = 0

    def get_account(self, user_id: str) -> Any:
        self.calls += 1
        return None

    def iter_chain(self, user_id: str) -> Iterator[Any]:
        self.calls += 1
        return iter(())


class _Index:
    def entry_ids_at(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {}


def _run_core(entries: int, accounts: int) -> dict[str, Any]:
    """The core fed hashed chains; the time spent making the pages (and their hashes) is not counted.

    Each entry is built with its real `hash` (tokenledger.domain.chain), so the run verifies
    every hash as the scheduled audit does. Building a page costs about as much as checking
    it (an `Entry` plus one hash), so that time is measured apart and taken out of the rate.
    """
    from tokenledger.domain.chain import GENESIS_HASH, entry_hash
    from tokenledger.domain.model import Account, Entry, EntryType
    from tokenledger.service.reconcile.fleet import Reconciler

    per_account = entries // accounts
    users = [f"u-{i:08d}" for i in range(accounts)]
    created = "2026-11-24T12:00:00.000Z"
    heads: dict[str, str] = {}

    def make_entry(user: str, seq: int, prev: str) -> Entry:
        entry = Entry(
            entry_id=f"{user}-{seq}",
            user_id=user,
            seq=seq,
            type=EntryType.GRANT,
            amount=1,
            balance_after=seq,
            counterparty="admin",
            related_id=None,
            metadata={},
            created_at=created,
        )
        return replace(entry, hash=entry_hash(entry, prev))

    for user in users:  # the accounts' heads, computed before the run (not counted)
        head = GENESIS_HASH
        for seq in range(1, per_account + 1):
            head = make_entry(user, seq, head).hash or ""
        heads[user] = head

    def account_pages() -> Iterator[list[Account]]:
        for start in range(0, accounts, PAGE_ITEMS):
            yield [
                Account(
                    user_id=u,
                    balance=per_account,
                    version=per_account,
                    created_at=created,
                    updated_at=created,
                    head_hash=heads[u],
                )
                for u in users[start : start + PAGE_ITEMS]
            ]

    making = [0.0]
    clock = time.process_time  # CPU seconds of this (single-threaded) process: a busy machine does not skew it

    def entry_pages() -> Iterator[list[Entry]]:
        page: list[Entry] = []
        started = clock()
        for user in users:  # a scan returns each partition's items together, in sort-key order
            prev = GENESIS_HASH
            for seq in range(1, per_account + 1):
                entry = make_entry(user, seq, prev)
                prev = entry.hash or ""
                page.append(entry)
                if len(page) == PAGE_ITEMS:
                    making[0] += clock() - started
                    yield page
                    started = clock()
                    page = []
        making[0] += clock() - started
        if page:
            yield page

    probe = _Probe()
    reconciler = Reconciler(probe=probe, entry_index=_Index(), payments=None)
    base_kb = _reset_peak_kb()
    started = clock()
    reconciler.take_cut(account_pages(), lambda _account: None)
    reconciler.check_entries(entry_pages())
    elapsed = clock() - started - making[0]
    peak_kb = _peak_kb()
    report = reconciler.report
    return {
        "entries": entries,
        "accounts": accounts,
        "entries_checked": report.entries_checked,
        "findings": len(report.to_json()["inconsistencies"]),
        "exact_rechecks": probe.calls,
        "seconds": round(elapsed, 3),
        "entries_per_s": round(report.entries_checked / elapsed) if elapsed else None,
        "peak_mb": round((peak_kb - base_kb) / 1024, 1),
        "hashes_checked": True,
    }


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_kb() -> int:
    """Reset the peak RSS to the current RSS (Linux: write 5 to clear_refs); return the current RSS.

    `ru_maxrss` cannot be used: Linux carries it across exec, so a child of a large process
    starts with its parent's peak.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kb("VmRSS") or 0


def _peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def scaling(sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """One fresh process per (entries, accounts), so each peak is its own."""
    rows = []
    for entries, accounts in sizes:
        done = subprocess.run(
            [sys.executable, "-m", "bench.audit", "--entries", str(entries), "--accounts", str(accounts)],
            cwd=str(REPO_ROOT),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            rows.append({"entries": entries, "accounts": accounts, "error": done.stderr.strip()[-400:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="One in-memory run of the reconciliation core.")
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--accounts", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(_run_core(args.entries, args.accounts)))


if __name__ == "__main__":
    main()
