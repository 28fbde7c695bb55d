"""The CDNOW transaction log, taken from the ``lifetimes`` wheel on PyPI.

The file is public (Fader and Hardie's CDNOW master set: 23,570 customers who first bought in
the first quarter of 1997, followed to the end of June 1998). PyPI is the only registry this
project can reach, and the ``lifetimes`` wheel ships the file, so the wheel is the source.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

LIFETIMES_PIN = "lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_master.txt"
FILE_NAME = "CDNOW_master.txt"


def fetch_cdnow(cache_dir: Path) -> Path:
    """Return the path of ``CDNOW_master.txt`` in ``cache_dir``, downloading it on first use.

    Parameters
    ----------
    cache_dir
        Folder that keeps the extracted file (created if missing).

    Returns
    -------
    Path
        ``cache_dir / "CDNOW_master.txt"``.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / FILE_NAME
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                LIFETIMES_PIN,
                "-d",
                tmp,
            ],
            check=True,
        )
        # The wheel is published as "Lifetimes-0.11.3-..." (capital L); match either spelling.
        wheels = [p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith("lifetimes-")]
        if len(wheels) != 1:
            raise RuntimeError(f"expected one lifetimes wheel in {tmp}, found {wheels}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(MEMBER)
        # Write then rename, so an interrupted run never leaves a truncated cached file.
        partial = Path(tmp) / FILE_NAME
        partial.write_bytes(data)
        partial.replace(target)
    return target


def load_cdnow(path: Path) -> pd.DataFrame:
    """Read the whitespace-separated CDNOW log into the project's order-line names.

    Parameters
    ----------
    path
        ``CDNOW_master.txt``, with or without its header line.

    Returns
    -------
    pd.DataFrame
        One row per order: ``account_id`` (str, zero-padded as in the file), ``order_date``
        (datetime64), ``quantity`` (number of CDs, int) and ``revenue`` (dollars, float).
    """
    raw = pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        names=["account_id", "order_date", "quantity", "revenue"],
        dtype=str,
    )
    # The wheel's copy starts with a header line and the original does not: keep data rows only.
    raw = raw[raw["order_date"].str.fullmatch(r"\d{8}")]
    if raw.empty:
        raise ValueError(f"{path} holds no 'id YYYYMMDD quantity revenue' rows")
    return pd.DataFrame(
        {
            "account_id": raw["account_id"].astype(str),
            "order_date": pd.to_datetime(raw["order_date"], format="%Y%m%d"),
            "quantity": raw["quantity"].astype("int64"),
            "revenue": raw["revenue"].astype("float64"),
        }
    ).reset_index(drop=True)
