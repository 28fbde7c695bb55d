"""Capacity benchmark: features, training snapshots and batch scoring by size, DuckDB and Spark.

    python bench/scale.py [--accounts 10000 30000 100000] [--engines duckdb spark]
                          [--years 3] [--snapshots 12] [--master local[2]]

For each size, a world of that many accounts (order lines growing with them) is simulated,
ingested into a DuckDB store and exported as Parquet folders (orders partitioned by year), all
kept under ``bench/out/scale/`` for later runs. A model is trained once, on a 1,000-account
world, for the scoring stage. Then, for each engine, size and stage, a child process times:

- ``features``: the snapshot at the end of the data (what ``kam features --as-of`` and
  scoring build);
- ``training``: snapshots at ``--snapshots`` monthly as_of dates ending a year before the end
  (the training set's build);
- ``scoring``: batch scoring of every active account at the end of the data (``kam score``:
  into the store on DuckDB; with ``mapInPandas`` into Parquet on Spark).

Each line gives wall seconds (the Spark session's start excluded: a cluster keeps one), the
peak resident memory of the child and everything it started (the Spark JVM and its Python
workers included), and, per engine and stage, the growth exponent b fitted to
seconds ~ order_lines^b over the sizes. Figures go to ``bench/out/scale.json``, and a later run
reuses them for the (engine, stage, size) it already measured (``--fresh`` measures again):
sizes can be added one run at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "scale"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from bench.machine import cpus, group_rss_mb  # noqa: E402

STAGES = ("features", "training", "scoring")
MODEL_ACCOUNTS = 1000
MODEL_NAME = "kam-scale-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark"],
                        choices=["duckdb", "spark"])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs' figures")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "STAGE", "WORLD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, stage, world = args.child
        print(json.dumps(_child(engine, stage, Path(world), args)))
        return
    _bench(args)


# ------------------------------------------------------------------------------------------------
# the parent: worlds, children, figures
# ------------------------------------------------------------------------------------------------
def _bench(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"{cpus()} cores, load average {load:.1f} at the start (the machine is shared)")
    saved = HERE / "out" / "scale.json"
    # figures of earlier runs are kept (each run takes long on a busy machine); --fresh drops
    results: list[dict[str, Any]] = (
        [] if args.fresh or not saved.exists() else json.loads(saved.read_text())["results"]
    )
    for accounts in sorted(args.accounts):
        world = _world(accounts, args.years, args.seed)
        lines = json.loads((world / "world.json").read_text())["order_lines"]
        for engine in args.engines:
            for stage in args.stages:
                key = (engine, stage, accounts)
                known = [r for r in results if (r["engine"], r["stage"], r["accounts"]) == key]
                if known:
                    figures = known[-1]
                else:
                    figures = _run_child(engine, stage, world, args)
                    figures.update(engine=engine, stage=stage, accounts=accounts,
                                   order_lines=lines, load_average=os.getloadavg()[0])
                    results.append(figures)
                    _save(saved, results)
                print(
                    f"{engine:6} {stage:8} {accounts:>7,} accounts {lines:>11,} lines: "
                    f"{figures['seconds']:8.1f} s  peak {figures['peak_mb']:7,.0f} MB  "
                    f"rows {figures['rows']:,}" + ("" if not known else "  (earlier run)"),
                    flush=True,
                )
    for (engine, stage), b in sorted(_exponents(results).items()):
        print(f"growth exponent {engine:6} {stage:8}: {b:.2f}")
    _save(saved, results)


def _save(path: Path, results: list[dict[str, Any]]) -> None:
    exponents = _exponents(results)
    path.write_text(json.dumps(
        {"results": results, "exponents": {f"{e}/{s}": b for (e, s), b in exponents.items()},
         "cores": cpus()},
        indent=2,
    ))


def _exponents(results: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    out = {}
    frame = pd.DataFrame(results)
    for (engine, stage), rows in frame.groupby(["engine", "stage"]):
        if rows["order_lines"].nunique() >= 2:
            slope = np.polyfit(np.log(rows["order_lines"]), np.log(rows["seconds"]), 1)[0]
            out[(str(engine), str(stage))] = float(slope)
    return out


def _run_child(engine: str, stage: str, world: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", engine, stage, str(world),
               "--snapshots", str(args.snapshots), "--master", args.master]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, group_rss_mb(process.pid))
        time.sleep(0.25)
    out = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"{engine} {stage} on {world.name} failed")
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["peak_mb"] = peak
    return figures


def _world(accounts: int, years: int, seed: int) -> Path:
    from kam.features.engines.parquet import export_tables
    from kam.features.ingest import ingest
    from kam.features.store import connect
    from kam.features.synthetic import simulate

    world = OUT / f"world-{accounts}x{years}y-seed{seed}"
    building = OUT / f"{world.name}.building"
    while building.exists() and not (world / "world.json").exists():
        time.sleep(5)  # another run is building it
    if (world / "world.json").exists():
        return world
    building.touch()
    began = time.perf_counter()
    data = world / "data"
    simulate(accounts, years, seed, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    con = connect(store, read_only=True)
    export_tables(con, world / "tables")
    lines = int(con.table("orders").count().to_pyarrow().as_py())
    con.disconnect()
    (world / "world.json").write_text(json.dumps({"accounts": accounts, "order_lines": lines}))
    building.unlink()
    print(f"built world {world.name} ({lines:,} order lines) in "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    return world


def _model() -> tuple[str, str]:
    """A registered model to score with (trained once on a 1,000-account world)."""
    from kam.features.ingest import ingest
    from kam.features.synthetic import simulate
    from kam.training.run import TrainRequest, train_candidate

    root = OUT / "model"
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    uri = f"models:/{MODEL_NAME}/1"
    if (root / "trained").exists():
        return uri, tracking
    data = root / "data"
    simulate(MODEL_ACCOUNTS, 3, 1, data)
    store = f"duckdb:///{data / 'kam.duckdb'}"
    ingest(data, store)
    train_candidate(TrainRequest(store_url=store, tracking_uri=tracking, experiment="scale",
                                 model_name=MODEL_NAME,
                                 artifact_location=(root / "artifacts").as_uri()))
    (root / "trained").touch()
    return uri, tracking


# ------------------------------------------------------------------------------------------------
# a child: one engine, one stage, one world
# ------------------------------------------------------------------------------------------------
def _child(engine: str, stage: str, world: Path, args: argparse.Namespace) -> dict[str, Any]:
    from kam.features.snapshots import as_of_range, build_snapshots, data_end
    from kam.features.store import connect
    from kam.models.registry import load_model

    model = None
    if stage == "scoring":
        uri, tracking = _model()
        model = load_model(uri, tracking)
    if engine == "spark":
        con = connect(f"spark:///{world / 'tables'}", master=args.master,
                      **{"spark.driver.memory": "4g"})
    else:
        con = connect(f"duckdb:///{world / 'data' / 'kam.duckdb'}", read_only=stage != "scoring")
    end = data_end(con)
    began = time.perf_counter()
    if stage == "features":
        rows = len(build_snapshots(con, [end], horizon="365d"))
    elif stage == "training":
        last = end - pd.DateOffset(years=1)
        dates = as_of_range(last - pd.DateOffset(months=args.snapshots - 1), last, "1mo")
        rows = len(build_snapshots(con, dates, horizon="365d"))
    else:
        assert model is not None
        if engine == "spark":
            from kam.serving.scoring.spark import score_on_spark

            rows = score_on_spark(con, model, world / "spark-scores", as_of=end).accounts
        else:
            from kam.serving.scoring.batch import score_accounts
            from kam.serving.store import write_scores

            rows = write_scores(con, score_accounts(con, model, as_of=end))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": int(rows), "finite": math.isfinite(seconds)}


if __name__ == "__main__":
    main()
