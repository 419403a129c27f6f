"""The reconcile function over a large ledger on moto: correct at scale, figures printed.

Seeds `TOKENLEDGER_RECONCILE_SCALE_ENTRIES` entries (default 4,000, kept small for the
suite; 20 per account) with BatchWriteItem, runs the real handler, and prints entries/s.
With `TOKENLEDGER_RECONCILE_SCALE_TRACE=1` a second run under tracemalloc prints the peak of
memory allocated during a run (our state, the page queue, and the engine's per-request
copies when it runs in process; the tables themselves were allocated before). It asserts the
report, never a time. The figures in docs/reconciliation.md come from, e.g.:

    TOKENLEDGER_RECONCILE_SCALE_ENTRIES=100000 TOKENLEDGER_RECONCILE_SCALE_TRACE=1 \
        .venv/bin/pytest -s tests/integration/test_reconcile_scale.py --engine dynamodb-local
"""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Any

import pytest

from infra.api import LocalApi
from tests.integration.test_reconcile import build_chain, commit, grant, new_user, reconcile, seed_accounts

ENTRIES_PER_ACCOUNT = 20
SCALE_ENTRIES = int(os.environ.get("TOKENLEDGER_RECONCILE_SCALE_ENTRIES", "4000"))
TRACE = os.environ.get("TOKENLEDGER_RECONCILE_SCALE_TRACE") == "1"


@pytest.mark.slow
def test_a_large_ledger_audits_healthy_with_throughput_and_peak_memory_printed(api: LocalApi, aws: Any) -> None:
    accounts = SCALE_ENTRIES // ENTRIES_PER_ACCOUNT
    drafts = [grant(1_000)] + [commit(3) for _ in range(ENTRIES_PER_ACCOUNT - 1)]
    seed_started = time.perf_counter()
    batch: list[Any] = []
    for _ in range(accounts):
        batch.append(build_chain(new_user(), drafts))
        if len(batch) == 200:
            seed_accounts(aws["dynamodb"], batch)
            batch = []
    seed_accounts(aws["dynamodb"], batch)
    seed_s = time.perf_counter() - seed_started

    started = time.perf_counter()
    report = reconcile(api)
    run_s = time.perf_counter() - started

    results = [report]
    peak_text = "peak not traced (TOKENLEDGER_RECONCILE_SCALE_TRACE=1)"
    if TRACE:
        tracemalloc.start()
        try:
            results.append(reconcile(api))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peak_text = f"peak allocated during a run {peak / 2**20:.1f} MiB"

    for result in results:
        assert result["healthy"] is True and result["inconsistencies"] == []
        assert result["exact_rechecks"] == 0, "segments of accounts and entries should line up"
        assert result["accounts_checked"] == accounts
        assert result["entries_checked"] == accounts * ENTRIES_PER_ACCOUNT
        assert result["tokens_outstanding"] == accounts * (1_000 - 3 * (ENTRIES_PER_ACCOUNT - 1))
    items = accounts + report["entries_checked"]
    print(
        f"\nreconcile on {aws['engine']}: {accounts:,} accounts, {report['entries_checked']:,} entries; "
        f"seeded with BatchWriteItem at {items / seed_s:,.0f} items/s; "
        f"audit {run_s:.1f} s = {report['entries_checked'] / run_s:,.0f} entries/s "
        f"({report['exact_rechecks']} exact re-checks); {peak_text}"
    )
