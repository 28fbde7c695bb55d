"""The product on a real purchase log (CDNOW), run the way a user would, beside BG/NBD.

    python bench/cdnow.py [--out bench/out] [--cutoff 1997-12-30]

A user holding the CDNOW log up to the cutoff (one year of history) wants a 26-week defection
score and value forecast for every customer today. The benchmark:

1. cuts the log at the cutoff and writes it to a fresh data folder;
2. runs the command line as a user would: ``kam ingest`` (shipped mapping
   features/mappings/cdnow.yaml), ``kam train --horizon 26w --decline 1.0 --population ever``,
   ``kam promote``, ``kam score --out scores.parquet``;
3. fits BG/NBD + Gamma-Gamma by maximum likelihood on the same cut (``kam.features.btyd``,
   which reproduces the published CDNOW estimates) and applies the recency rule;
4. scores all three against what each customer did in the 26 weeks after the cutoff (from the
   full log), with 90% bootstrap intervals over customers and paired intervals of the
   difference kam minus BG/NBD;
5. measures the ceiling: trees cross-fitted on those very outcomes, from kam's features at the
   cutoff alone and with the whole weekly history added (bench/cdnow_ceiling.py).

The log comes from the ``lifetimes`` wheel on PyPI (bench/cdnow_data.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from cdnow_ceiling import ceiling  # noqa: E402
from cdnow_data import fetch_cdnow  # noqa: E402
from metrics_common import defection_metrics, format_table, value_metrics  # noqa: E402

from kam.features.btyd import BetaGeo, GammaGamma, rfm_summary  # noqa: E402
from kam.features.mapping import BUILTIN_MAPPINGS  # noqa: E402
from kam.project import open_project  # noqa: E402
from kam.training.metrics import bootstrap_ci  # noqa: E402

HORIZON_DAYS = 182
# what the user asks for: kam train's settings, and the feature rows the ceiling reads
HORIZON, DECLINE, POPULATION = "26w", "1.0", "ever"
N_BOOT = 300


def read_log(path: Path) -> pd.DataFrame:
    """The CDNOW master file as orders (account_id, order_date, quantity, revenue)."""
    log = pd.read_csv(
        path, sep=r"\s+", skiprows=1, names=["account_id", "date", "quantity", "revenue"],
        dtype={"account_id": str, "date": str},
    )
    log["order_date"] = pd.to_datetime(log["date"], format="%Y%m%d")
    return log[["account_id", "order_date", "quantity", "revenue"]]


def write_cut(source: Path, target: Path, cutoff: pd.Timestamp) -> int:
    """Copy the lines of the master file dated on or before ``cutoff``; return their number."""
    lines = source.read_text().splitlines()
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split()[1] <= cutoff.strftime("%Y%m%d")]
    target.write_text("\n".join(kept) + "\n")
    return len(kept) - 1


def kam(*args: str, env: dict[str, str]) -> float:
    """Run one ``kam`` command as a user would; return its wall time."""
    started = time.perf_counter()
    command = [str(Path(sys.executable).with_name("kam")), *args]
    print("$ kam " + " ".join(args), flush=True)
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def btyd_baseline(orders: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma fitted on the cut, in weeks, predicting the next 26 weeks."""
    rfm = rfm_summary(orders, cutoff, unit_days=7.0)
    x, t_x, T = rfm["frequency"], rfm["recency"], rfm["T"]
    bg = BetaGeo().fit(x, t_x, T)
    repeat = (rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)
    gg = GammaGamma().fit(rfm.loc[repeat, "frequency"], rfm.loc[repeat, "monetary_value"])
    weeks = HORIZON_DAYS / 7.0
    expected = bg.expected_purchases(weeks, x, t_x, T)
    spend = gg.expected_spend(np.where(repeat, x, 0), np.where(repeat, rfm["monetary_value"], 0))
    last = orders.groupby("account_id")["order_date"].max().reindex(rfm.index)
    return pd.DataFrame(
        {
            "account_id": rfm.index.astype(str),
            "btyd_p_no_purchase": bg.prob_no_purchase(weeks, x, t_x, T),
            "btyd_expected_purchases": expected,
            "btyd_value": expected * spend,
            "recency_days": (cutoff - last).dt.days.to_numpy(),
        }
    )


def outcomes(orders: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Revenue and defection (no purchase) in the 26 weeks after the cutoff, per customer."""
    end = cutoff + pd.Timedelta(days=HORIZON_DAYS)
    after = orders[(orders["order_date"] > cutoff) & (orders["order_date"] <= end)]
    known = orders.loc[orders["order_date"] <= cutoff, "account_id"].unique()
    value = after.groupby("account_id")["revenue"].sum().reindex(known, fill_value=0.0)
    return pd.DataFrame(
        {"account_id": known, "actual_value": value.to_numpy(), "defected": (value <= 0).to_numpy()}
    )


def paired_ci(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, *, probability: bool, value: bool
) -> tuple[float, float]:
    """90% bootstrap interval of metric(a) - metric(b) over the same resampled customers."""

    def difference(i: np.ndarray) -> dict[str, float]:
        if value:
            return {metric: value_metrics(y[i], a[i])[metric] - value_metrics(y[i], b[i])[metric]}
        first = defection_metrics(y[i], a[i], is_probability=probability)[metric]
        second = defection_metrics(y[i], b[i], is_probability=probability)[metric]
        return {metric: first - second}

    return bootstrap_ci(difference, len(y), n_boot=N_BOOT, seed=0)[metric]


def run(out: Path, cutoff: pd.Timestamp) -> dict:
    """Run the user path and the baselines; return the metric tables."""
    root = out / "cdnow-user"
    if root.exists():
        shutil.rmtree(root)
    data = root / "data"
    data.mkdir(parents=True)
    source = fetch_cdnow(out / "cache")
    lines = write_cut(source, data / "CDNOW_master.txt", cutoff)
    print(f"log cut at {cutoff.date()}: {lines:,} order lines")

    env = {**os.environ, "KAM_WORKDIR": str(root / "work"), "KAM_DATA_DIR": str(data)}
    timing = {
        "ingest": kam("ingest", "--mapping", str(BUILTIN_MAPPINGS / "cdnow.yaml"), env=env),
        "train": kam(
            "train", "--horizon", HORIZON, "--decline", DECLINE, "--population", POPULATION,
            env=env,
        ),
        "promote": kam("promote", env=env),
        "score": kam("score", "--out", str(root / "scores.parquet"), env=env),
    }
    scores = pd.read_parquet(root / "scores.parquet")
    scores["account_id"] = scores["account_id"].astype(str)

    orders = read_log(source)
    cut = orders[orders["order_date"] <= cutoff]
    started = time.perf_counter()
    btyd = btyd_baseline(cut, cutoff)
    timing["btyd_fit"] = time.perf_counter() - started
    truth = outcomes(orders, cutoff)
    both = truth.merge(scores, on="account_id", how="left").merge(btyd, on="account_id")
    missing = int(both["defection_probability"].isna().sum())
    if missing:
        raise SystemExit(f"kam scored no row for {missing} customers who bought before the cutoff")

    y = both["defected"].to_numpy(dtype=int)
    value = both["actual_value"].to_numpy(dtype=float)
    p_kam = both["defection_probability"].to_numpy()
    p_btyd = both["btyd_p_no_purchase"].to_numpy()
    defection = {
        "kam (kam score)": defection_metrics(y, p_kam, is_probability=True),
        "BG/NBD P(no purchase)": defection_metrics(y, p_btyd, is_probability=True),
        "BG/NBD -E[purchases]": defection_metrics(y, -both["btyd_expected_purchases"]),
        "recency rule (days)": defection_metrics(y, both["recency_days"]),
    }
    values = {
        "kam (kam score)": value_metrics(value, both["value"]),
        "BG/NBD x Gamma-Gamma": value_metrics(value, both["btyd_value"]),
    }
    coverage = float(np.mean((value >= both["value_low"]) & (value <= both["value_high"])))
    # An interval that keeps its 80% promise for an account that buys nothing with probability
    # p > 0.8 must hold 0, and then covers at least p: the lowest coverage any honest 80%
    # interval can have on these customers, by kam's own probabilities.
    floor = float(np.mean(np.maximum(0.8, p_kam)))
    differences = {
        "roc_auc": paired_ci(y, p_kam, p_btyd, "roc_auc", probability=True, value=False),
        "brier": paired_ci(y, p_kam, p_btyd, "brier", probability=True, value=False),
        "norm_gini": paired_ci(
            value, both["value"].to_numpy(), both["btyd_value"].to_numpy(), "norm_gini",
            probability=False, value=True,
        ),
    }
    started = time.perf_counter()
    project = open_project(workdir=root / "work", data_dir=data)
    at_cut = project.snapshots(
        cutoff, horizon=HORIZON, population=POPULATION, decline=float(DECLINE)
    )
    limit = ceiling(at_cut, truth, cut, cutoff, project.model().scorer)
    timing["ceiling"] = time.perf_counter() - started
    return {
        "cutoff": str(cutoff.date()),
        "customers": len(both),
        "defection_rate": float(y.mean()),
        "defection": defection,
        "value": values,
        "kam_interval_coverage_80": coverage,
        "coverage_floor_80": floor,
        "kam_minus_btyd_90ci": differences,
        "ceiling_trained_on_the_outcomes": limit,
        "seconds": timing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--cutoff", default="1997-12-30")
    args = parser.parse_args()
    result = run(args.out, pd.Timestamp(args.cutoff))
    print(
        f"\nCDNOW cut at {result['cutoff']}, next 26 weeks: {result['customers']:,} customers, "
        f"defection rate {result['defection_rate']:.3f}"
    )
    print("\ndefection (no purchase in the horizon)")
    print(format_table(result["defection"], ["roc_auc", "pr_auc", "lift_top10", "brier"]))
    print("\nvalue (revenue in the horizon)")
    print(
        format_table(
            result["value"], ["mae", "rmse", "spearman", "norm_gini", "top20_capture", "bias_pct"]
        )
    )
    print(
        f"\nkam 80% interval coverage: {result['kam_interval_coverage_80']:.3f} (floor for any "
        f"80% interval given kam's P(no purchase): {result['coverage_floor_80']:.3f})"
    )
    for metric, (low, high) in result["kam_minus_btyd_90ci"].items():
        print(f"kam - BG/NBD {metric}: 90% CI {low:+.4f}..{high:+.4f}")
    print(
        "\nthe ceiling: trees cross-fitted (5 folds) on the outcomes after the cut, which no "
        "user has"
    )
    for name, figures in result["ceiling_trained_on_the_outcomes"].items():
        print(
            f"  {name}: ROC-AUC {figures['roc_auc']:.4f} "
            f"({figures['roc_auc_low']:.4f}..{figures['roc_auc_high']:.4f}), normalized Gini "
            f"{figures['norm_gini']:.4f} "
            f"({figures['norm_gini_low']:.4f}..{figures['norm_gini_high']:.4f})"
        )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    path = args.out / "cdnow.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
