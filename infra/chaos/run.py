"""A seeded, concurrent workload with faults injected at the DynamoDB client, then invariant checks.

    python -m infra.chaos --seed 7 --ops 2000 --clients 8 --fault-rate 0.1 [--engine moto|dynamodb-local]

Many clients drive the REAL handlers (`infra.api.LocalApi`, one set of Lambda environments
per client) over a few hot accounts: commitments (some with If-Match), admin grants,
payouts, refunds, adjustments, replays and key reuses, plus whatever of batches, reversals,
Stripe webhooks, audit/repair and the reconciliation the template declares. Each DynamoDB call a handler
makes may be hit by a fault (see `FAULT_KINDS`); clients retry like real clients, with the
same Idempotency-Key or the same Stripe event, until they get a definite answer (2xx or
4xx). Then, with faults off, the run checks the ledger (see `Verifier`) and prints the seed,
operation counts, faults injected by kind and each invariant's result. Exit status 1 if any
invariant fails.

Reproducible from the seed: each client's operations and each client's fault decisions
come from their own `random.Random` seeded from (seed, client). With one client a run is
replayed exactly; with several, the thread interleaving (and so which requests contend)
varies from run to run, as it would in production.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable

from infra.api import LocalApi
from infra.chaos.client import Client
from infra.chaos.events import EventsUnderFaults, events_check
from infra.chaos.faults import install_fault_hook
from infra.chaos.report import Check, Report
from infra.chaos.verification import Verifier
from infra.chaos.workload import HOT_ACCOUNTS, Features, Workload
from infra.chaos.world import stripe_secret_values, world
from infra.queues import QueuePump
from infra.template import Stack

ENGINES = ("moto", "dynamodb-local")
PROGRESS_EVERY_S = 15.0


def run(
    *,
    seed: int,
    ops: int,
    clients: int,
    fault_rate: float,
    engine: str = "moto",
    accounts: int = HOT_ACCOUNTS,
    stack: Stack | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """One run: build the world, drive the workload with faults, verify with faults off."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    stack = stack or Stack()
    install_fault_hook()
    secrets, stripe_secret = stripe_secret_values(stack, seed)
    with world(engine, stack, secrets) as dynamodb:
        probe = LocalApi(stack)
        features = Features.of(stack, probe)
        workload = Workload(seed, stack, features, stripe_secret, accounts)
        accounts_table = stack.physical_name("AccountsTable")
        per_client = [ops // clients + (1 if i < ops % clients else 0) for i in range(clients)]
        workers = [Client(i, workload, n, fault_rate, accounts_table) for i, n in enumerate(per_client)]
        started = time.monotonic()
        failures: list[BaseException] = []

        def drive(worker: Client) -> None:
            try:
                worker.run()
            except BaseException as crashed:  # reported after the run; the checks still run
                failures.append(crashed)

        # Outbound events: the stream consumer runs through the workload, faults at EventBridge.
        events = EventsUnderFaults(stack, engine, seed=seed, fault_rate=fault_rate)
        if events.declared(stack):
            events.start()
        # The settlement queue: its worker pays refunds while the clients go on committing.
        pump = QueuePump(stack, LocalApi(stack).pool).start() if features.predictions else None
        threads = [threading.Thread(target=drive, args=(w,), name=f"chaos-client-{w.number}") for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=PROGRESS_EVERY_S)
            while thread.is_alive():
                if log:
                    done = sum(len(w.done) for w in workers)
                    log(f"chaos: {done}/{ops} operations after {time.monotonic() - started:.0f}s")
                thread.join(timeout=PROGRESS_EVERY_S)
        elapsed = time.monotonic() - started
        if pump is not None:
            pump.stop()
            pump.drain()  # what is left of the settlements, before the checks
        if log:
            log(f"chaos: workload done in {elapsed:.1f}s; verifying")
        events_caught_up = events.finish() if events.mappings else True
        all_ops = [op for w in workers for op in w.done]
        injected: Counter[str] = Counter()
        for worker in workers:
            injected.update(worker.injector.injected)
        verifier = Verifier(stack, dynamodb, all_ops, features, probe)
        checks = verifier.run()
        if events.mappings:
            checks.append(events_check(events, verifier.entries, caught_up=events_caught_up))
        if failures:
            checks.insert(0, Check("clients_ran", False, f"{len(failures)} clients crashed: {failures[0]!r}"))
        return Report(
            seed=seed,
            engine=engine,
            clients=clients,
            fault_rate=fault_rate,
            features=features.names(),
            ops=all_ops,
            faults=injected,
            event_faults=events.injected,
            died=sum(w.died for w in workers),
            elapsed_s=elapsed,
            checks=checks,
            accounts=len(verifier.users()),
            entries=len(verifier.entries),
            invoke_errors=sum((w.invoke_errors for w in workers), Counter()),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    parser.add_argument("--ops", type=int, default=2000, help="operations in total, over all clients")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="chance that a DynamoDB call fails")
    parser.add_argument("--engine", choices=ENGINES, default="moto")
    parser.add_argument("--accounts", type=int, default=HOT_ACCOUNTS, help="hot accounts the clients share")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also the functions' logs and metrics (JSON lines), as Lambda's"
    )
    args = parser.parse_args(argv)
    # Quiet by default: every injected fault would log a stack trace, and EMF lines would bury the report.
    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.verbose else "CRITICAL"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false" if args.verbose else "true"
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    if args.ops < 1 or args.clients < 1 or args.accounts < 1 or not 0 <= args.fault_rate < 1:
        parser.error("need ops, clients and accounts >= 1 and 0 <= fault-rate < 1")
    print(f"chaos: seed={seed} ops={args.ops} clients={args.clients} fault_rate={args.fault_rate} engine={args.engine}")
    sys.stdout.flush()
    report = run(
        seed=seed,
        ops=args.ops,
        clients=args.clients,
        fault_rate=args.fault_rate,
        engine=args.engine,
        accounts=args.accounts,
        log=lambda line: print(line, flush=True),
    )
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
