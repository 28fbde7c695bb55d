"""The product on real transactions (CDNOW) beside BG/NBD + Gamma-Gamma, on one out-of-time split.

    python bench/cdnow.py

Downloads the `lifetimes` wheel (the CDNOW log ships inside it), ingests the log with the
shipped mapping (features/mappings/cdnow.yaml) through the same `ingest` and `train` path as any
CRM export, and trains with: test as_of 1997-12-30 (end of week 52), horizon 26 weeks,
population `ever` (every customer who bought on or before the cutoff), defection = no purchase
in the horizon (decline 1.0). Then runs bench/cdnow_btyd.py (BG/NBD + Gamma-Gamma, in its own
environment) on the same split and scores both sides with the same metric functions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from cdnow_data import fetch_cdnow  # noqa: E402
from metrics_common import defection_metrics, format_table, value_metrics  # noqa: E402

from kam.features.ingest import ingest  # noqa: E402
from kam.features.mapping import BUILTIN_MAPPINGS  # noqa: E402
from kam.features.periods import Period  # noqa: E402
from kam.training.run import TrainRequest, train_candidate  # noqa: E402

CUTOFF = pd.Timestamp("1997-12-30")


def run(out: Path) -> dict:
    """Run both sides and return the metric tables."""
    data = out / "cdnow" / "data"
    data.mkdir(parents=True, exist_ok=True)
    source = fetch_cdnow(out / "cache")
    shutil.copyfile(source, data / "CDNOW_master.txt")

    started = time.perf_counter()
    report = ingest(
        data, f"duckdb:///{data / 'kam.duckdb'}", mapping=BUILTIN_MAPPINGS / "cdnow.yaml"
    )
    ingest_s = time.perf_counter() - started
    orders = report["orders"]
    print(
        f"ingest: {orders.read:,} read, {orders.kept:,} kept, {orders.rejected:,} rejected "
        f"({ingest_s:.1f} s)"
    )

    started = time.perf_counter()
    outcome = train_candidate(
        TrainRequest(
            store_url=f"duckdb:///{data / 'kam.duckdb'}",
            tracking_uri=f"sqlite:///{out / 'cdnow' / 'mlflow.db'}",
            experiment="cdnow",
            model_name="kam-cdnow",
            artifact_location=(out / "cdnow" / "mlartifacts").as_uri(),
            horizon=Period.parse("26w"),
            decline=1.0,
            activity_window=None,
            test_as_of=CUTOFF,
            register=False,
        ),
        progress=lambda msg: print(f"  {msg}"),
    )
    train_s = time.perf_counter() - started
    product = outcome.evaluation.predictions

    btyd_path = out / "cdnow_btyd.parquet"
    subprocess.run(
        [sys.executable, str(BENCH / "cdnow_btyd.py"), "--out", str(btyd_path)], check=True
    )
    btyd = pd.read_parquet(btyd_path)
    both = product.merge(btyd, on="account_id", how="outer", indicator=True)
    unmatched = int((both["_merge"] != "both").sum())
    if unmatched:
        raise SystemExit(f"{unmatched} customers are in one side only: the populations differ")
    y = both["label_defection"].to_numpy(dtype=int)
    if not np.array_equal(y, both["actual_defection"].to_numpy(dtype=int)):
        raise SystemExit("the two sides disagree on who defected: the labels differ")
    value = both["label_value"].to_numpy(dtype=float)

    defection = {
        "kam LightGBM (calibrated p)": defection_metrics(
            y, both["defection_probability"], is_probability=True
        ),
        "BG/NBD P(no purchase)": defection_metrics(y, both["churn_score"], is_probability=True),
        "BG/NBD -E[purchases]": defection_metrics(y, -both["expected_purchases"]),
        "recency rule (days)": defection_metrics(y, both["recency_days"]),
    }
    values = {
        "kam LightGBM": value_metrics(value, both["value"]),
        "BG/NBD x Gamma-Gamma": value_metrics(value, both["value_pred"]),
        "last-period revenue": value_metrics(value, both["last_period_revenue"]),
    }
    coverage = float(np.mean((value >= both["value_low"]) & (value <= both["value_high"])))
    return {
        "customers": len(both),
        "defection_rate": float(y.mean()),
        "defection": defection,
        "value": values,
        "kam_interval_coverage_80": coverage,
        "kam_train_seconds": train_s,
        "kam_choices": outcome.fit.notes,
        "split": outcome.plan.describe(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args()
    result = run(args.out)
    print(
        f"\nCDNOW, cutoff {CUTOFF.date()}, horizon 26 weeks: {result['customers']:,} customers, "
        f"defection rate {result['defection_rate']:.3f}"
    )
    print(f"kam split: {result['split']}")
    print("\ndefection (no purchase in the horizon)")
    print(format_table(result["defection"], ["roc_auc", "pr_auc", "lift_top10", "brier"]))
    print("\nvalue (revenue in the horizon)")
    print(
        format_table(
            result["value"], ["mae", "rmse", "spearman", "norm_gini", "top20_capture", "bias_pct"]
        )
    )
    print(
        f"\nkam 80% interval coverage: {result['kam_interval_coverage_80']:.3f}; "
        f"kam training {result['kam_train_seconds']:.0f} s"
    )
    path = args.out / "cdnow.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
