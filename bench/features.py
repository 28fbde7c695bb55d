"""Benchmark: point-in-time feature snapshots on a synthetic world, against a pandas baseline.

    python bench/features.py [--accounts 20000 --years 3 --snapshots 12 --seed 7]

1. Simulates the world (``features.synthetic.simulate``) and ingests it into a DuckDB store
   (``features.ingest.ingest``) under ``bench/out/``; both are reused by later runs with the
   same arguments (``--fresh`` rebuilds them).
2. Builds every catalog feature and the labels for ``--snapshots`` monthly as_of dates, the last
   one a year before the end of the data (so the labels are observed), in a child process.
3. Computes a handful of the same features (revenue_90d, revenue_365d, recency_days,
   order_days_365d, categories_365d over the same population) with plain pandas, one as_of at
   a time, in another child process: the in-run baseline.
4. Prints rows, wall time, CPU time and peak memory (the child's own peak RSS, which covers
   DuckDB's native memory too) for both sides, the speed ratio, and whether the baseline's
   values match the snapshot's exactly; writes the figures to ``bench/out/features.json``.

The bar (DESIGN.md section 9): under 60 s for 20,000 accounts, about 5 million order lines and
12 as_of dates on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
# This script is named like the package it measures: run as `python bench/features.py`, its own
# folder comes first on the path and would shadow `features`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from bench.machine import cpus, peak_rss_mb  # noqa: E402

BASELINE_FEATURES = [
    "revenue_90d",
    "revenue_365d",
    "recency_days",
    "order_days_365d",
    "categories_365d",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="re-simulate and re-ingest")
    parser.add_argument("--child", choices=["snapshots", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--as-of", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = _snapshots_child if args.child == "snapshots" else _pandas_child
        figures = run(args.store, [pd.Timestamp(d) for d in args.as_of], Path(args.result))
        figures["peak_rss_mb"] = peak_rss_mb()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        print(json.dumps(figures))
        return
    _bench(args)


def _bench(args: argparse.Namespace) -> None:
    world = OUT / f"world-{args.accounts}x{args.years}y-seed{args.seed}"
    store = world / "kam.duckdb"
    url = f"duckdb:///{store}"
    prepared = _prepare(world, url, args)

    from kam.features.snapshots import as_of_range, data_end
    from kam.features.store import connect

    con = connect(url, read_only=True)
    end = data_end(con)
    lines = int(con.table("orders").count().to_pyarrow().as_py())
    con.disconnect()
    last = end - pd.DateOffset(years=1)
    dates = as_of_range(last - pd.DateOffset(months=args.snapshots - 1), last, "1mo")
    print(
        f"world: {args.accounts:,} accounts, {args.years} years to {end.date()}, "
        f"{lines:,} order lines; {len(dates)} as_of dates {dates[0].date()} .. {dates[-1].date()}"
    )

    load = os.getloadavg()[0]
    print(f"{cpus()} cores; load average before the runs {load:.1f}", end="")
    print(" (other work is running: wall times will be inflated)" if load > 0.5 else "")
    snap_file = OUT / "features-snapshots.parquet"
    base_file = OUT / "features-pandas-baseline.parquet"
    snap = _child("snapshots", url, dates, snap_file)
    base = _child("pandas", url, dates, base_file)
    check = _compare(snap_file, base_file)

    ratio = base["seconds"] / snap["seconds"]
    rows = [
        ("ibis/DuckDB snapshots", snap, f"{snap['features']} features + labels"),
        ("pandas baseline", base, f"{len(BASELINE_FEATURES)} features"),
    ]
    print(f"\n{'side':<24}{'rows':>10}{'wall s':>9}{'CPU s':>8}{'peak RSS MB':>13}  computes")
    for name, fig, what in rows:
        print(
            f"{name:<24}{fig['rows']:>10,}{fig['seconds']:>9.1f}{fig['cpu_seconds']:>8.1f}"
            f"{fig['peak_rss_mb']:>13,.0f}  {what}"
        )
    print(
        f"\nsnapshots: {snap['seconds']:.1f} s for {len(dates)} as_of dates "
        f"(bar: under 60 s) - {'PASS' if snap['seconds'] < 60 else 'FAIL'}; "
        f"of which building and compiling the Ibis expression {snap['compile_seconds']:.1f} s"
    )
    print(
        f"pandas baseline / snapshots wall time: {ratio:.1f}x "
        f"(the baseline computes {len(BASELINE_FEATURES)} features, the snapshots "
        f"{snap['features']} plus labels)"
    )
    per_feature = (base["cpu_seconds"] / len(BASELINE_FEATURES)) / (
        snap["cpu_seconds"] / snap["features"]
    )
    print(
        f"CPU seconds per feature column: pandas {base['cpu_seconds'] / len(BASELINE_FEATURES):.2f}"
        f", snapshots {snap['cpu_seconds'] / snap['features']:.2f} ({per_feature:.1f}x less)"
    )
    print(f"baseline values equal the snapshot's: {check}")

    report = {
        "accounts": args.accounts,
        "years": args.years,
        "seed": args.seed,
        "order_lines": lines,
        "as_of": [str(d.date()) for d in dates],
        "prepare_seconds": prepared,
        "snapshots": snap,
        "pandas_baseline": base,
        "baseline_over_snapshots": ratio,
        "baseline_over_snapshots_cpu_per_feature": per_feature,
        "baseline_matches": check,
        "cpu_count": cpus(),
        "load_average_before": load,
    }
    (OUT / "features.json").write_text(json.dumps(report, indent=2))
    print(f"figures written to {OUT / 'features.json'}")


def _prepare(world: Path, url: str, args: argparse.Namespace) -> dict[str, float]:
    """Simulate and ingest once per set of arguments; returns the seconds each step took."""
    store = Path(url.removeprefix("duckdb:///"))
    if store.exists() and not args.fresh:
        print(f"reusing {world}")
        return {}
    from kam.features.ingest import ingest
    from kam.features.synthetic import simulate

    data = world / "data"
    began = time.perf_counter()
    summary = simulate(args.accounts, args.years, args.seed, data)
    simulated = time.perf_counter() - began
    print(f"simulated in {simulated:.1f} s: {summary.rows['orders']:,} order lines")
    store.unlink(missing_ok=True)
    began = time.perf_counter()
    ingest(data, url, rejects_dir=world / "rejects")
    ingested = time.perf_counter() - began
    print(f"ingested in {ingested:.1f} s")
    return {"simulate": simulated, "ingest": ingested}


def _child(kind: str, url: str, dates: list[pd.Timestamp], result: Path) -> dict[str, Any]:
    """Run one side in a fresh process, so its peak memory is its own."""
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--store",
        url,
        "--result",
        str(result),
        "--as-of",
        *[str(d.date()) for d in dates],
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {kind} run failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _snapshots_child(url: str, dates: list[pd.Timestamp], result: Path) -> dict[str, Any]:
    from kam.features.catalog import available
    from kam.features.snapshots import build_snapshots, snapshot_table
    from kam.features.store import connect, input_tables

    began = time.perf_counter()
    con = connect(url, read_only=True)
    expr = snapshot_table(con, dates)
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    frame = build_snapshots(con, dates)
    seconds = time.perf_counter() - began
    frame.to_parquet(result, index=False)
    return {
        "rows": len(frame),
        "seconds": seconds,
        "compile_seconds": compile_seconds + _sql_seconds(expr),
        "features": len(available(input_tables(con))),
    }


def _sql_seconds(expr: Any) -> float:
    import ibis

    began = time.perf_counter()
    ibis.to_sql(expr)
    return time.perf_counter() - began


def _pandas_child(url: str, dates: list[pd.Timestamp], result: Path) -> dict[str, Any]:
    """The straightforward pandas way: filter the orders to each as_of and group by account."""
    from kam.features.store import connect

    began = time.perf_counter()
    con = connect(url, read_only=True)
    orders = con.table("orders").select("account_id", "order_date", "revenue", "product_category")
    orders = orders.to_pandas()
    orders["day"] = orders["order_date"].dt.normalize()
    loaded = time.perf_counter() - began
    frames = []
    for as_of in dates:
        known = orders[orders["day"] <= as_of]
        age = (as_of - known["day"]).dt.days
        last_year = known[age < 365]
        by_account = last_year.groupby("account_id")
        frame = pd.DataFrame(
            {
                "revenue_365d": by_account["revenue"].sum(),
                "order_days_365d": by_account["day"].nunique(),
                "categories_365d": by_account["product_category"].nunique(),
            }
        )
        frame["revenue_90d"] = (
            known[age < 90].groupby("account_id")["revenue"].sum().reindex(frame.index).fillna(0.0)
        )
        frame["recency_days"] = (as_of - by_account["day"].max()).dt.days
        frame["as_of"] = as_of
        frames.append(frame.reset_index())
    out = pd.concat(frames, ignore_index=True)[["account_id", "as_of", *BASELINE_FEATURES]]
    seconds = time.perf_counter() - began
    out.to_parquet(result, index=False)
    return {"rows": len(out), "seconds": seconds, "load_seconds": loaded}


def _compare(snap_file: Path, base_file: Path) -> str:
    snap = pd.read_parquet(snap_file, columns=["account_id", "as_of", *BASELINE_FEATURES])
    base = pd.read_parquet(base_file)
    merged = snap.merge(
        base, on=["account_id", "as_of"], how="outer", suffixes=("", "_pd"), indicator=True
    )
    unmatched = int((merged["_merge"] != "both").sum())
    if unmatched:
        return f"no: {unmatched} (account, as_of) rows in only one of them"
    worst = {
        name: float(np.nanmax(np.abs(merged[name].astype(float) - merged[f"{name}_pd"])))
        for name in BASELINE_FEATURES
    }
    if all(diff < 1e-6 for diff in worst.values()):
        return f"yes, all {len(merged):,} rows"
    return "no: largest differences " + ", ".join(f"{k} {v:g}" for k, v in worst.items())






if __name__ == "__main__":
    main()
