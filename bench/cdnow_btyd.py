"""Classical baseline on CDNOW: BG/NBD + Gamma-Gamma on an out-of-time split.

    python bench/cdnow_btyd.py --out bench/out/cdnow_btyd.parquet

Calibration is every order on or before the cutoff (end of week 52, 1997-12-30; the log starts
1997-01-01), the horizon the 182 days after it. Every customer bought before the cutoff, so the
population is all 23,570. Defection is no purchase in the horizon; value is revenue in it.

The models come from the ``lifetimes`` package, which is kept out of the project's environment:
on first run this script creates ``bench/.venv-btyd`` from ``bench/btyd-requirements.txt`` and
re-runs itself there (``--no-venv`` runs in the current interpreter instead). Only the standard
library is imported at module level so that any Python 3.11+ can start it.

Writes one row per customer (``account_id``, ``churn_score``, ``value_pred``,
``actual_defection``, ``actual_value``, then the model's parts and the baselines' inputs) and a
``.metrics.json`` beside it, and prints the metric tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".venv-btyd"
REQUIREMENTS = BENCH_DIR / "btyd-requirements.txt"
CUTOFF = "1997-12-30"
HORIZON_DAYS = 182

DEFECTION_COLUMNS = ["roc_auc", "pr_auc", "lift_top10", "brier", "mean_pred", "base_rate"]
VALUE_COLUMNS = ["mae", "rmse", "spearman", "norm_gini", "top20_capture", "bias_pct"]


def ensure_btyd_env(venv_dir: Path = VENV_DIR, requirements: Path = REQUIREMENTS) -> Path:
    """Create or refresh the benchmark's virtualenv and return its Python.

    The requirements' hash is stamped in the venv, so editing the file triggers a reinstall.
    """
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.is_file() and stamp.read_text().strip() == digest:
        return python
    if not python.exists():
        print(f"creating {venv_dir} (first run, about 30 s)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
        # Keep the venv out of git without touching the repository's .gitignore.
        (venv_dir / ".gitignore").write_text("*\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True
    )
    stamp.write_text(digest + "\n")
    return python


def _in_venv(venv_dir: Path) -> bool:
    """Whether this interpreter is the one of ``venv_dir``."""
    return Path(sys.prefix).resolve() == venv_dir.resolve()


def rfm_summary(orders: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Standard BG/NBD summary in days from orders on or before ``cutoff``.

    Orders of one day count as one purchase: ``frequency`` is the number of repeat purchase
    days, ``recency`` the days from first to last purchase, ``T`` the days from first purchase
    to ``cutoff``, ``monetary_value`` the mean revenue of the repeat purchase days (0 without
    any). Indexed by ``account_id``.
    """
    from lifetimes.utils import summary_data_from_transaction_data

    calib = orders[orders["order_date"] <= cutoff]
    if calib.empty:
        raise ValueError(f"no orders on or before the cutoff {cutoff.date()}")
    return summary_data_from_transaction_data(
        calib,
        customer_id_col="account_id",
        datetime_col="order_date",
        monetary_value_col="revenue",
        observation_period_end=cutoff,
        freq="D",
    )


def outcomes_and_baselines(
    orders: pd.DataFrame, accounts: pd.Index, cutoff: pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """Horizon labels and the two rule baselines' inputs for ``accounts``.

    Returns ``actual_value`` (revenue in (cutoff, cutoff + horizon]), ``actual_defection``
    (1 if no order in it), ``recency_days`` (days from the last order to the cutoff) and
    ``last_period_revenue`` (revenue in (cutoff - horizon, cutoff]), indexed by ``account_id``.
    """
    import pandas as pd

    horizon = pd.Timedelta(days=horizon_days)
    date = orders["order_date"]
    future = orders[(date > cutoff) & (date <= cutoff + horizon)]
    if future.empty:
        raise ValueError(f"no orders in the horizon after {cutoff.date()}; the log ends too early")
    past = orders[date <= cutoff]
    recent = past[past["order_date"] > cutoff - horizon]

    by_account = pd.DataFrame(index=accounts)
    by_account["actual_value"] = future.groupby("account_id")["revenue"].sum()
    by_account["actual_value"] = by_account["actual_value"].fillna(0.0)
    bought = by_account.index.isin(future["account_id"].unique())
    by_account["actual_defection"] = (~bought).astype("int64")
    last = past.groupby("account_id")["order_date"].max()
    by_account["recency_days"] = (cutoff - last.reindex(accounts)).dt.days.astype("float64")
    by_account["last_period_revenue"] = recent.groupby("account_id")["revenue"].sum()
    by_account["last_period_revenue"] = by_account["last_period_revenue"].fillna(0.0)
    return by_account


def bgnbd_prob_no_purchase(
    params: dict[str, float], t: float, frequency: object, recency: object, age: object
) -> object:
    """BG/NBD probability of no purchase in (T, T + t] given the history (x, t_x, T).

    A customer dead at T never buys again; one alive at T has, given the history, a purchase
    rate distributed Gamma(r + x, alpha + T), so P(no purchase in t | alive) =
    ((alpha + T) / (alpha + T + t)) ** (r + x). Hence
    P0 = 1 - P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)).
    For a new customer (x = 0, T = 0) this is (alpha / (alpha + t)) ** r, the model's
    unconditional P(X(t) = 0).
    """
    import numpy as np

    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(age, dtype=np.float64)
    # P(alive) as in Fader, Hardie and Lee (2005), eq. (12); log form avoids overflow at large x.
    log_ratio = (r + x) * np.log((alpha + big_t) / (alpha + t_x))
    odds_dead = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * np.exp(log_ratio), 0.0)
    p_alive = 1.0 / (1.0 + odds_dead)
    p_zero_if_alive = np.exp((r + x) * np.log((alpha + big_t) / (alpha + big_t + t)))
    return 1.0 - p_alive * (1.0 - p_zero_if_alive)


def fit_predict(summary: pd.DataFrame, horizon_days: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit BG/NBD on everyone and Gamma-Gamma on repeat buyers; predict the horizon.

    Returns per-account ``p_no_purchase``, ``expected_purchases``, ``p_alive``,
    ``expected_avg_revenue`` and ``value_pred`` (expected purchases times the Gamma-Gamma
    conditional mean order value; the population mean where there is no repeat purchase), and
    the fitted parameters.
    """
    import numpy as np
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    x, t_x, age = summary["frequency"], summary["recency"], summary["T"]
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(x, t_x, age)
    bg_params = {k: float(v) for k, v in bgf.params_.items()}

    # Gamma-Gamma needs a positive mean order value; one repeat buyer's repeat orders are all $0.
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(repeat["frequency"], repeat["monetary_value"])
    gg_params = {k: float(v) for k, v in ggf.params_.items()}
    p, q, v = gg_params["p"], gg_params["q"], gg_params["v"]
    population_mean = v * p / (q - 1)

    out = pd.DataFrame(index=summary.index)
    out["p_no_purchase"] = bgnbd_prob_no_purchase(bg_params, horizon_days, x, t_x, age)
    out["expected_purchases"] = bgf.conditional_expected_number_of_purchases_up_to_time(
        horizon_days, x, t_x, age
    )
    out["p_alive"] = bgf.conditional_probability_alive(x, t_x, age)
    out["expected_avg_revenue"] = np.where(
        x > 0,
        ggf.conditional_expected_average_profit(x, summary["monetary_value"]),
        population_mean,
    )
    out["value_pred"] = out["expected_purchases"] * out["expected_avg_revenue"]

    # The closed form must agree with lifetimes' own P(alive) and, for a newborn, with its
    # unconditional P(X(t) = 0); a wrong sign or unit would show here first.
    check_alive = 1.0 - bgnbd_prob_no_purchase(bg_params, 1e300, x, t_x, age)
    if not np.allclose(check_alive, out["p_alive"], atol=1e-6):
        raise RuntimeError("P(no purchase) disagrees with lifetimes' P(alive) as t grows")
    newborn = bgnbd_prob_no_purchase(bg_params, horizon_days, 0.0, 0.0, 0.0)
    if not np.isclose(newborn, bgf.probability_of_n_purchases_up_to_time(horizon_days, 0)):
        raise RuntimeError("P(no purchase) disagrees with lifetimes' P(X(t) = 0) for x = T = 0")

    params = {
        **{f"bgnbd_{k}": val for k, val in bg_params.items()},
        **{f"gg_{k}": val for k, val in gg_params.items()},
        "gg_population_mean": population_mean,
        "gg_fit_customers": float(len(repeat)),
    }
    return out, params


def run(out_path: Path, cache_dir: Path) -> dict[str, object]:
    """Fetch, split, fit, predict, score and write; return the metrics and parameters."""
    import numpy as np
    import pandas as pd
    from cdnow_data import fetch_cdnow, load_cdnow
    from metrics_common import defection_metrics, format_table, value_metrics

    started = time.perf_counter()
    cutoff = pd.Timestamp(CUTOFF)
    orders = load_cdnow(fetch_cdnow(cache_dir))
    loaded = time.perf_counter()

    summary = rfm_summary(orders, cutoff)
    truth = outcomes_and_baselines(orders, summary.index, cutoff, HORIZON_DAYS)
    preds, params = fit_predict(summary, HORIZON_DAYS)
    fitted = time.perf_counter()

    table = pd.concat([preds, truth, summary], axis=1)
    table.index.name = "account_id"
    y, actual = table["actual_defection"], table["actual_value"]

    defection = {
        "BG/NBD P(no purchase)": defection_metrics(y, table["p_no_purchase"], is_probability=True),
        "BG/NBD -E[purchases]": defection_metrics(y, -table["expected_purchases"]),
        "BG/NBD 1-P(alive) [not used]": defection_metrics(y, 1 - table["p_alive"]),
        "recency rule (days)": defection_metrics(y, table["recency_days"]),
    }
    value = {
        "BG/NBD x Gamma-Gamma": value_metrics(actual, table["value_pred"]),
        "last-period revenue": value_metrics(actual, table["last_period_revenue"]),
    }

    frame = pd.DataFrame(
        {
            "account_id": table.index.astype(str),
            "churn_score": table["p_no_purchase"].to_numpy(),
            "value_pred": table["value_pred"].to_numpy(),
            "actual_defection": y.to_numpy(),
            "actual_value": actual.to_numpy(),
            "expected_purchases": table["expected_purchases"].to_numpy(),
            "expected_avg_revenue": table["expected_avg_revenue"].to_numpy(),
            "p_alive": table["p_alive"].to_numpy(),
            "recency_days": table["recency_days"].to_numpy(),
            "last_period_revenue": table["last_period_revenue"].to_numpy(),
            "frequency": table["frequency"].to_numpy(),
        }
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_path, index=False)
    done = time.perf_counter()

    split = {
        "cutoff": CUTOFF,
        "horizon_days": HORIZON_DAYS,
        "orders": len(orders),
        "customers": len(table),
        "repeat_buyers_at_cutoff": int((table["frequency"] > 0).sum()),
        "defection_rate": float(y.mean()),
        "actual_value_total": float(actual.sum()),
        "predicted_value_total": float(table["value_pred"].sum()),
    }
    timing = {
        "load_s": loaded - started,
        "fit_predict_s": fitted - loaded,
        "score_write_s": done - fitted,
    }
    result = {
        "split": split,
        "params": params,
        "defection": defection,
        "value": value,
        "timing": timing,
    }
    out_path.with_suffix(".metrics.json").write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"CDNOW out-of-time: cutoff {CUTOFF}, horizon {HORIZON_DAYS} days, "
        f"{split['customers']:,} customers, {split['orders']:,} orders, "
        f"{split['repeat_buyers_at_cutoff']:,} repeat buyers at the cutoff"
    )
    print("fitted: " + ", ".join(f"{k}={val:.4g}" for k, val in params.items()))
    print()
    print("defection (no purchase in the horizon)")
    print(format_table(defection, DEFECTION_COLUMNS))
    print()
    print("value (revenue in the horizon)")
    print(format_table(value, VALUE_COLUMNS))
    print()
    print(
        f"totals: actual {split['actual_value_total']:,.0f}, "
        f"BG/NBD x GG {split['predicted_value_total']:,.0f}; "
        f"mean P(no purchase) {np.mean(table['p_no_purchase']):.4f} "
        f"vs defection rate {split['defection_rate']:.4f}"
    )
    print(
        f"time: load {timing['load_s']:.1f} s, fit+predict {timing['fit_predict_s']:.1f} s, "
        f"score+write {timing['score_write_s']:.1f} s"
    )
    print(f"wrote {out_path} and {out_path.with_suffix('.metrics.json')}")
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, move into the benchmark's venv unless told not to, and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "cdnow_btyd.parquet")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_DIR / "out" / "cache")
    parser.add_argument(
        "--no-venv",
        action="store_true",
        help="run in the current interpreter (it must have lifetimes and the pinned libraries)",
    )
    args = parser.parse_args(argv)
    if not args.no_venv and not _in_venv(VENV_DIR):
        python = ensure_btyd_env()
        passed = sys.argv[1:] if argv is None else argv
        os.execv(python, [str(python), str(Path(__file__).resolve()), *passed])
    # Absolute paths so that the results do not depend on where the re-run starts.
    run(args.out.resolve(), args.cache_dir.resolve())


if __name__ == "__main__":
    main()
