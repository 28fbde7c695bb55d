"""The README's "Models on the demo world" table, regenerated from fresh working directories.

    python bench/readme_figures.py [--runs 2] [--root DIR]

Each run is a child process in a fresh working directory (``KAM_WORKDIR``), doing what
``make demo`` does up to training, with the demo's settings (2,000 accounts, 5 years, seed 7
unless ``KAM_DEMO_*``/``KAM_SEED`` say otherwise): simulate, ingest, train. The script prints
the first run's table in the README's format, then, metric by metric, whether the runs agree,
and their range where they do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# (target, metric) -> the README's label and number format
ROWS: dict[tuple[str, str], tuple[str, str]] = {
    ("defection", "roc_auc"): ("ROC-AUC", "{:.3f}"),
    ("defection", "pr_auc"): ("PR-AUC", "{:.3f}"),
    ("defection", "lift_top_decile"): ("lift, top decile", "{:.2f}"),
    ("defection", "brier"): ("Brier", "{:.3f}"),
    ("value", "mae"): ("MAE", "{:,.0f}"),
    ("value", "spearman"): ("Spearman", "{:.3f}"),
    ("value", "gini"): ("normalized Gini", "{:.3f}"),
    ("value", "top20_capture"): ("top-20% capture", "{:.3f}"),
    ("value", "bias_pct"): ("total bias", "{:+.1f}%"),
    ("value", "coverage"): ("80% interval coverage", "{:.3f}"),
}
# finer than the table, so that a difference between runs shows
RANGE_FORMAT = {"mae": "{:,.1f}", "bias_pct": "{:+.2f}%", "lift_top_decile": "{:.3f}"}


def one_run(workdir: Path, out: Path) -> None:
    """Simulate, ingest and train the demo world under ``workdir``; write the figures to ``out``."""
    os.environ["KAM_WORKDIR"] = str(workdir)
    from kam.features.ingest import ingest
    from kam.features.synthetic import simulate
    from kam.settings import DemoSettings
    from kam.training.run import train_candidate
    from kam.training.settings import train_request

    settings = DemoSettings()
    data = settings.resolved_data_dir
    started = time.perf_counter()
    simulate(settings.demo_accounts, settings.demo_years, settings.seed, data)
    ingest(data, settings.store_url_for())
    outcome = train_candidate(train_request(settings))
    ev = outcome.evaluation
    table = ev.table.reset_index()
    figures = {
        "accounts": settings.demo_accounts,
        "years": settings.demo_years,
        "seed": settings.seed,
        "as_of": str(ev.as_of.date()),
        "test_accounts": ev.n_rows,
        "test_defections": ev.n_defections,
        "train_seconds": outcome.seconds,
        "seconds": time.perf_counter() - started,
        "rows": json.loads(table.to_json(orient="records")),
    }
    out.write_text(json.dumps(figures, indent=1))


def _cell(fmt: str, value: Any) -> str:
    return "" if value is None else fmt.format(value)


def readme_table(figures: dict[str, Any]) -> str:
    """The README's markdown table of one run."""
    by_key = {(r["target"], r["metric"]): r for r in figures["rows"]}
    lines = [
        "| target | metric | model | 90% CI | baseline | BG/NBD |",
        "|---|---|---|---|---|---|",
    ]
    for key, (label, fmt) in ROWS.items():
        row = by_key.get(key)
        if row is None:
            continue
        lo, hi = _cell(fmt, row["model_lo"]), _cell(fmt, row["model_hi"])
        interval = f"{lo.removesuffix('%')}..{hi}" if lo and hi else ""
        lines.append(
            f"| {key[0]} | {label} | {_cell(fmt, row['model'])} | {interval} | "
            f"{_cell(fmt, row.get('baseline'))} | {_cell(fmt, row.get('btyd'))} |"
        )
    return "\n".join(lines)


def compare(runs: list[dict[str, Any]]) -> list[str]:
    """One line per metric: equal in every run, or the range of the model's figure."""
    lines = []
    for key, (label, _) in ROWS.items():
        values = [
            r["model"] for run in runs for r in run["rows"] if (r["target"], r["metric"]) == key
        ]
        if not values:
            continue
        fine = RANGE_FORMAT.get(key[1], "{:.4f}")
        if len(set(values)) == 1:
            shown = fine.format(values[0])
            lines.append(f"{key[0]} {label}: equal in all {len(runs)} runs ({shown})")
        else:
            lines.append(
                f"{key[0]} {label}: {fine.format(min(values))} .. {fine.format(max(values))} "
                f"over {len(runs)} runs"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="fresh runs to compare")
    parser.add_argument("--root", type=Path, help="where the working directories go (temp)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        one_run(args.one, args.out)
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    root = args.root or Path(tempfile.mkdtemp(prefix="kam-readme-"))
    runs = []
    for k in range(args.runs):
        workdir = root / f"run{k + 1}"
        if workdir.exists():
            parser.error(f"{workdir} exists: each run needs a fresh working directory")
        workdir.mkdir(parents=True)
        out = workdir / "figures.json"
        print(f"run {k + 1}/{args.runs} in {workdir}", file=sys.stderr, flush=True)
        # its own process and folder: nothing cached or configured carries over between runs
        subprocess.run(
            [sys.executable, __file__, "--one", str(workdir), "--out", str(out)],
            check=True, cwd=workdir,
        )
        runs.append(json.loads(out.read_text()))
    first = runs[0]
    print(
        f"demo world: {first['accounts']:,} accounts, {first['years']} years, seed "
        f"{first['seed']}; backtest test as_of {first['as_of']}, {first['test_accounts']:,} "
        f"accounts, {first['test_defections']:,} defections; training took "
        + ", ".join(f"{run['train_seconds']:.0f} s" for run in runs)
    )
    print()
    print(readme_table(first))
    print()
    print("\n".join(compare(runs)))


if __name__ == "__main__":
    main()
