"""What a chaos run reports: each invariant check's result, operation counts, faults injected."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from infra.chaos.faults import FAULT_KINDS
from infra.chaos.model import Op


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    seed: int
    engine: str
    clients: int
    fault_rate: float
    features: list[str]
    ops: list[Op]
    faults: Counter[str]
    died: int
    elapsed_s: float
    checks: list[Check]
    accounts: int = 0
    entries: int = 0
    invoke_errors: Counter[str] = field(default_factory=Counter)
    # EventBridge faults at the stream consumer's PutEvents calls: how many calls it makes follows
    # its batching (thread timing), so unlike `faults` (DynamoDB) they are not replayed from the seed.
    event_faults: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def counts(self) -> dict[str, Counter[str]]:
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        for op in self.ops:
            by_kind[op.kind][str(op.status) if op.status is not None else "no answer"] += 1
        return dict(sorted(by_kind.items()))

    def render(self) -> str:
        rate = len(self.ops) / max(self.elapsed_s, 0.001)
        lines = [
            f"chaos: seed={self.seed} engine={self.engine} clients={self.clients} fault_rate={self.fault_rate} "
            f"ops={len(self.ops)} elapsed={self.elapsed_s:.1f}s ({rate:.0f} ops/s)",
            f"  drives: {', '.join(self.features)}",
            f"  ledger: {self.accounts} accounts, {self.entries} entries",
            "  operations (final status: count):",
        ]
        for kind, statuses in self.counts().items():
            total = sum(statuses.values())
            detail = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            lines.append(f"    {kind:<22} {total:>6}  ({detail})")
        attempts = sum(op.attempts for op in self.ops)
        transient: Counter[str] = Counter()
        for op in self.ops:
            transient.update(op.transient)
        lines.append(f"  requests sent: {attempts} (retries: {attempts - len(self.ops)})")
        lines.append(
            "  transient answers clients retried: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(transient.items())) or "none")
        )
        lines.append(
            f"  faults injected: {sum(self.faults.values())} ("
            + ", ".join(f"{k}: {self.faults.get(k, 0)}" for k in FAULT_KINDS)
            + ")"
        )
        if self.event_faults:
            lines.append(
                f"  EventBridge faults injected: {sum(self.event_faults.values())} ("
                + ", ".join(f"{k}: {n}" for k, n in sorted(self.event_faults.items()))
                + ")"
            )
        if self.invoke_errors:
            lines.append(
                f"  invokes that failed outside a handler (answered 502, retried): {sum(self.invoke_errors.values())}; "
                + "; ".join(f"{n} x {e}" for e, n in self.invoke_errors.most_common(3))
            )
        lines.append("  invariants:")
        for check in self.checks:
            lines.append(f"    [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        lines.append(f"chaos: {'PASS' if self.ok else 'FAIL'} (seed {self.seed})")
        return "\n".join(lines)
