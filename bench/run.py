"""`make bench`: every figure of docs/benchmarks.md, printed as tables and written to bench/results.json.

Run from the repository root: `python -m bench.run [--quick] [--skip SECTION ...]`.
It never fails on a time or a missed target: it reports them. It fails only when it could
not measure (a crash), so a broken benchmark does not pass for a good figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import prepare_environment

RESULTS = Path(__file__).resolve().parent / "results.json"
SECTIONS = ("cost", "dynamodb_local", "contention", "cold_start", "audit")
AUDIT_SIZES_FULL = ((10_000, 1_000), (100_000, 1_000), (1_000_000, 1_000), (100_000, 10_000), (100_000, 100_000))
AUDIT_SIZES_QUICK = ((10_000, 1_000), (100_000, 1_000), (100_000, 10_000))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Handlers print EMF metrics and logs to stdout; keep the table readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def timed(label: str, work: Callable[[], Any]) -> Any:
    log(f"bench: {label} ...")
    started = time.perf_counter()
    result = work()
    log(f"bench: {label} done in {time.perf_counter() - started:.1f} s")
    return result


# ---------------------------------------------------------------------- sections
def cost_section(engine: str) -> dict[str, Any]:
    from bench import cost
    from bench.harness import World

    world = World(engine=engine, report_capacity=engine != "moto")
    with world.running(), quiet():
        ours = cost.measure_ours(world)
        usual = cost.measure_baseline(world)
    return {"ours": ours.results, "pending": ours.pending, "usual": usual.results}


def dynamodb_local_section() -> dict[str, Any]:
    import shutil

    from infra.dynamodb_local import find_installed

    if find_installed() is None:
        return {"unavailable": "DynamoDB Local is not installed (python -m infra.dynamodb_local installs it)"}
    if shutil.which("java") is None:
        return {"unavailable": "no java on PATH"}
    measured = cost_section("dynamodb-local")
    return measured


def contention_section(quick: bool) -> list[dict[str, Any]]:
    from bench import contention
    from bench.harness import World

    world = World()
    with world.running(), quiet():
        return contention.run(world, writes_per_writer=2 if quick else 3)


def cold_start_section(quick: bool) -> dict[str, Any]:
    from bench import cold_start

    figures = cold_start.measure(
        runs=2 if quick else 6, breakdown_runs=1 if quick else 2, warm_requests=30 if quick else 200
    )
    return {"import": figures, "deployment": cold_start.deployment_sizes()}


def audit_section(quick: bool) -> list[dict[str, Any]]:
    from bench import audit

    return audit.scaling(AUDIT_SIZES_QUICK if quick else AUDIT_SIZES_FULL)


# ---------------------------------------------------------------------- results
def assemble(measured: dict[str, Any], quick: bool) -> dict[str, Any]:
    from bench.cost import FLOORS

    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "units": "capacity units computed from item sizes by DynamoDB's published rules (docs/benchmarks.md); "
        "write_units: table writes (refused conditional writes included); gsi_write_units: index writes, apart",
    }
    cost = measured.get("cost")
    if cost:
        operations = {}
        for name, figures in cost["ours"].items():
            operations[name] = {**figures, "floor": FLOORS.get(name)}
        results["operations"] = operations
        results["baseline"] = cost["usual"]
        results["pending"] = cost["pending"]
        results["targets"] = targets(cost["ours"], cost["usual"])
    local = measured.get("dynamodb_local")
    if local is not None:
        if "unavailable" in local:
            results["dynamodb_local"] = local
        else:
            results["dynamodb_local"] = {
                "operations": {n: _engine_view(f) for n, f in local["ours"].items()},
                "baseline": {n: _engine_view(f) for n, f in local["usual"].items()},
            }
    if "contention" in measured:
        results["contention"] = measured["contention"]
    cold = measured.get("cold_start")
    if cold:
        figures = dict(cold["import"])
        results["cold_start_method"] = figures.pop("_path", None)
        results["warm_commitment"] = figures.pop(cold_start_warm_key(), None)
        results["without_bytecode"] = figures.pop("_without_bytecode", None)
        results["cold_start"] = figures
        results["deployment"] = cold["deployment"]
    if "audit" in measured:
        results["audit"] = measured["audit"]
    return results


def cold_start_warm_key() -> str:
    from bench.cold_start import WARM_KEY

    return WARM_KEY


def _engine_view(figures: dict[str, Any]) -> dict[str, Any]:
    keep = ("round_trips", "read_units", "write_units", "gsi_write_units", "reported_units", "engine", "calls")
    view = {k: figures[k] for k in keep if k in figures}
    view["computed_units"] = round(figures["read_units"] + figures["write_units"] + figures["gsi_write_units"], 3)
    return view


def targets(ours: dict[str, Any], usual: dict[str, Any]) -> dict[str, Any]:
    def rt(table: dict[str, Any], name: str) -> int | None:
        return table.get(name, {}).get("round_trips")

    checks: dict[str, Any] = {
        "commitment_round_trips_at_most_2": (rt(ours, "commitment") or 99) <= 2,
        "commitment_if_match_round_trips_1": rt(ours, "commitment_if_match") == 1,
        "commitment_at_most_half_the_usual_round_trips": (rt(ours, "commitment") or 99) * 2
        <= (rt(usual, "commitment") or 0),
        "no_item_written_on_replay": all(
            ours[n]["items_written"] == 0 for n in ("replay", "replay_if_match") if n in ours
        ),
    }
    if "stripe_redelivery" in ours:
        checks["no_item_written_on_stripe_redelivery"] = ours["stripe_redelivery"]["items_written"] == 0
    checks["replay_refused_write_units"] = ours.get("replay", {}).get("write_units")
    return checks


# ---------------------------------------------------------------------- printing
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    operations = results.get("operations")
    if operations:
        usual = results.get("baseline", {})
        rows = []
        for name, f in operations.items():
            floor = f.get("floor") or {}
            u = usual.get(name, {})
            rows.append(
                [
                    name,
                    f["round_trips"],
                    f["read_units"],
                    f["write_units"],
                    f["gsi_write_units"],
                    f["items_written"],
                    floor.get("round_trips"),
                    floor.get("write_units"),
                    u.get("round_trips"),
                    u.get("read_units"),
                    u.get("write_units"),
                    " ".join(f.get("calls", [])) if name != "audit_entry" else _audit_calls(f),
                ]
            )
        for name, why in results.get("pending", {}).items():
            rows.append([name, "pending", "", "", "", "", "", "", "", "", "", why])
        out.append(
            table(
                "Cost per operation (counted at the boto3 client; units from item sizes)",
                [
                    "operation",
                    "RT",
                    "RCU",
                    "WCU",
                    "GSI WCU",
                    "written",
                    "floor RT",
                    "floor WCU",
                    "usual RT",
                    "usual RCU",
                    "usual WCU",
                    "calls",
                ],
                rows,
            )
        )
        out.append(table("Targets", ["target", "met"], [[k, v] for k, v in results.get("targets", {}).items()]))
    local = results.get("dynamodb_local")
    if local:
        if "unavailable" in local:
            out.append(f"DynamoDB Local: {local['unavailable']}")
        else:
            rows = []
            for side in ("operations", "baseline"):
                for name, f in local[side].items():
                    engine = f.get("engine", {})
                    why = sorted({w for c in engine.get("calls", []) for w in c.get("why", [])})
                    rows.append(
                        [
                            ("ours " if side == "operations" else "usual ") + name,
                            f["computed_units"],
                            f.get("reported_units"),
                            engine.get("agree"),
                            ", ".join(why),
                        ]
                    )
            out.append(
                table(
                    "DynamoDB Local: our computed units (read + write + GSI) vs its ConsumedCapacity",
                    ["operation", "computed", "reported", "agree", "why not"],
                    rows,
                )
            )
            from bench.counting import DIFFERENCE_REASONS

            out.append("\n".join(f"  {code}: {text}" for code, text in DIFFERENCE_REASONS.items()))
    contention = results.get("contention")
    if contention:
        rows = [
            [
                r["writers"],
                r["accounts"],
                r["writes"],
                r["succeeded"],
                r["failed"],
                r["goodput_per_s"],
                r["retries_per_write"],
                f"{r['attempts_max_seen']}/{r['attempts_bound']}",
                r["bound_holds"],
                r["invariants_hold"],
            ]
            for r in contention
        ]
        out.append(
            table(
                "Contention (moto, one environment per writer; goodput is moto-bound)",
                [
                    "writers",
                    "accounts",
                    "writes",
                    "ok",
                    "409",
                    "goodput/s",
                    "retries/ok",
                    "attempts max/bound",
                    "bound holds",
                    "invariants",
                ],
                rows,
            )
        )
    cold = results.get("cold_start")
    if cold:
        deployment = results.get("deployment", {})
        rows = []
        for name, f in cold.items():
            size = deployment.get("functions", {}).get(name, {})
            if "error" in f:
                rows.append([name, "error", "", "", "", "", "", "", f["error"][-120:]])
                continue
            first = f.get("first_request") or {}
            parts = ", ".join(f"{s['step'].split(' (')[0]} {s['ms']:g}" for s in f.get("breakdown", [])[1:])
            rows.append(
                [
                    name,
                    f["import_cpu_ms_median"],
                    f["cpu_ratio_to_boto3"],
                    f["import_ms_median"],
                    f["ratio_to_boto3"],
                    f"{first['route']} {first['status']}: {first['cpu_ms_median']:g} / {first['ms_median']:g}"
                    if first
                    else "-",
                    f.get("import_and_first_ratio_to_boto3"),
                    f"{size.get('code_bytes', '')} B + layer = {size.get('with_layer_mb', '')} MB" if size else "",
                    parts,
                ]
            )
        out.append(
            table(
                "Cold start (import in a fresh process, median; ratio to import boto3 + one DynamoDB client)",
                [
                    "function",
                    "CPU ms",
                    "CPU ratio",
                    "wall ms",
                    "wall ratio",
                    "first request: CPU / wall ms",
                    "import+first wall ratio",
                    "deployment",
                    "beyond the floor, wall ms per step",
                ],
                rows,
            )
        )
        warm = results.get("warm_commitment")
        if warm and "error" not in warm:
            out.append(
                f"Warm commitment through {warm['function']}'s handler, {warm['requests']} requests "
                f"(statuses {warm['statuses']}): p50 {warm['p50_ms']} ms, p99 {warm['p99_ms']} ms; "
                f"outside DynamoDB calls p50 {warm['outside_dynamodb_p50_ms']} ms, "
                f"p99 {warm['outside_dynamodb_p99_ms']} ms"
            )
        elif warm:
            out.append(f"Warm commitment: error {warm['error'][-200:]}")
        bare = results.get("without_bytecode")
        if bare:
            floor_cpu = cold.get("boto3", {}).get("import_cpu_ms_median") or 0
            out.append(
                f"Without bytecode in the layer (SAM's Python builder): floor {bare['floor_cpu_ms_median']} CPU ms, "
                f"{bare['function']} {bare['import_cpu_ms_median']} CPU ms"
                + (f" = {bare['import_cpu_ms_median'] / floor_cpu:.2f}x the floor with bytecode" if floor_cpu else "")
            )
            for name, pair in (bare.get("packages") or {}).items():
                with_, without = pair["with"], pair["without"]
                first = (
                    f"; first request ({pair['first_request']} {with_['first_status']}) "
                    f"{with_['first_cpu_ms_median']} CPU ms, {without['first_cpu_ms_median']} without"
                    if "first_cpu_ms_median" in with_
                    else ""
                )
                out.append(
                    f"{name}'s own package (shared/Makefile) with and without bytecode (SAM's Python builder), "
                    f"in pairs: import {with_['import_cpu_ms_median']} CPU ms, "
                    f"{without['import_cpu_ms_median']} without{first}"
                )
        layer = deployment.get("layer", {})
        if layer:
            out.append(
                f"Layer: {layer.get('mb')} MB, {layer.get('mb_without_bytecode')} MB without bytecode "
                f"({layer.get('how', layer.get('error'))}); largest: "
                + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in layer.get("largest", {}).items())
            )
    audit = results.get("audit")
    if audit:
        rows = [
            [r["entries"], r["accounts"], r.get("entries_per_s"), r.get("peak_mb"), r.get("seconds"), r.get("findings")]
            for r in audit
        ]
        out.append(
            table(
                "Audit core, in-memory pages, hashes verified (a process per row; CPU s, page building excluded)",
                ["entries", "accounts", "entries/s", "peak MB", "seconds", "findings"],
                rows,
            )
        )
    return "\n\n".join(out)


def _audit_calls(figures: dict[str, Any]) -> str:
    calls = figures.get("calls_by_operation", {})
    per_entry = figures.get("read_units_per_entry")
    return " ".join(f"{k}x{v}" for k, v in calls.items()) + f" ({per_entry} RCU/entry)"


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples and sizes (CI)")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    prepare_environment()
    started = time.perf_counter()
    measured: dict[str, Any] = {}
    wanted = [s for s in SECTIONS if s not in args.skip]
    if "cost" in wanted:
        measured["cost"] = timed("cost per operation (moto)", lambda: cost_section("moto"))
    if "dynamodb_local" in wanted:
        measured["dynamodb_local"] = timed("cost per operation (DynamoDB Local)", dynamodb_local_section)
    if "contention" in wanted:
        measured["contention"] = timed("contention", lambda: contention_section(args.quick))
    if "cold_start" in wanted:
        measured["cold_start"] = timed("cold start and sizes", lambda: cold_start_section(args.quick))
    if "audit" in wanted:
        measured["audit"] = timed("audit scaling", lambda: audit_section(args.quick))
    results = assemble(measured, args.quick)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(render(results))
    print(f"\nwritten to {args.output} in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
