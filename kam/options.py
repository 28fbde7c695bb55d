"""Options that several ``kam`` commands take, each declared once with one help text.

An option means the same thing in every command that takes it; where a command gives it a
role of its own (which as_of ``--as-of`` is, what ``--out`` holds), its help says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

AS_OF_HELP = "as_of date (YYYY-MM-DD): features use only events on or before it"

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="data directory: the input files and the store (DIR/kam.duckdb, in place of "
        "KAM_STORE_URL); default KAM_DATA_DIR, else <workdir>/data",
    ),
]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)]
AsOfListOpt = Annotated[list[str] | None, typer.Option("--as-of", help=AS_OF_HELP)]
HorizonOpt = Annotated[
    str | None,
    typer.Option("--horizon", help="label horizon, e.g. 365d, 26w, 6mo; default KAM_HORIZON"),
]
PopulationOpt = Annotated[
    str | None,
    typer.Option(
        "--population",
        help="accounts with an order in this window before as_of, e.g. 365d, or ever; "
        "default KAM_ACTIVITY_WINDOW",
    ),
]
DeclineOpt = Annotated[
    float | None,
    typer.Option(
        "--decline",
        help="defection: value over the horizon < (1 - decline) x the horizon before; "
        "1.0 = stopped buying; default KAM_DECLINE",
    ),
]
EveryOpt = Annotated[
    str | None,
    typer.Option(
        "--every",
        help="spacing of snapshot as_of dates, e.g. 1w, 1mo, or auto (weekly under two years "
        "of history, monthly otherwise); default KAM_SNAPSHOT_EVERY",
    ),
]
_OUT = typer.Option("--out", help="file to write: .parquet, or .csv")
OutOpt = Annotated[Path | None, _OUT]
RequiredOutOpt = Annotated[Path, _OUT]
ModelUriOpt = Annotated[
    str | None,
    typer.Option(
        "--model-uri",
        help="model to use, e.g. models:/NAME/3; default KAM_MODEL_URI, else "
        "models:/<model name>@champion",
    ),
]
_ACCOUNTS = typer.Option("--accounts", min=1, help="accounts to simulate")
AccountsOpt = Annotated[int, _ACCOUNTS]
# None: the number the command's settings give
AccountsOrSettingOpt = Annotated[int | None, _ACCOUNTS]
