"""Write a synthetic B2B key-account world in the data contract's format, with its ground truth.

Accounts are simulated in chunks, each with its own random stream derived from the seed and the
chunk number, and appended to one open file per table, so a world of any size is written in
bounded memory and the same seed always gives the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from kam.features.contract import (
    CHANNELS,
    COMPLAINT_CATEGORIES,
    CONTACT_ROLES,
    CONTACT_SENIORITY,
    DIRECTIONS,
    OUR_SENIORITY,
    SEVERITIES,
    TABLES,
)
from kam.features.synthetic import catalog
from kam.features.synthetic.dynamics import ChunkRows, simulate_chunk
from kam.features.synthetic.output import (
    TIMESTAMP,
    TableSink,
    contract_sink,
    day_timestamps,
    fixed_ids,
    lookup_strings,
)
from kam.features.synthetic.population import Population
from kam.features.synthetic.timeline import Calendar, SharedDrivers

CHUNK_ACCOUNTS = 5000
FILE_FORMATS = ("parquet", "csv")
# Prefix and digits of each event table's ids.
ID_FORMAT = {
    "orders": ("O", 10),
    "interactions": ("I", 10),
    "complaints": ("C", 9),
    "deliveries": ("D", 10),
    "actions": ("X", 9),
}

TRUTH_SCHEMAS = {
    "account_months": pa.schema([
        ("account_id", pa.string()), ("month", TIMESTAMP),
        ("competitor_pressure", pa.float64()), ("unmet_needs", pa.float64()),
        ("quality_issues", pa.int64()), ("delivery_issues", pa.int64()),
        ("open_complaints", pa.int64()), ("complaint_pressure", pa.float64()),
        ("contacts", pa.int64()), ("single_threaded", pa.bool_()),
        ("exec_contact", pa.bool_()), ("manager_changed", pa.bool_()),
        ("own_business", pa.float64()), ("share_of_wallet", pa.float64()),
        ("expected_revenue", pa.float64()), ("hazard", pa.float64()),
        *((f"hazard_{c}", pa.float64()) for c in catalog.CAUSES),
        ("state", pa.string()),
    ]),
    "defections": pa.schema([
        ("account_id", pa.string()), ("onset_month", TIMESTAMP),
        ("defection_month", TIMESTAMP), ("kind", pa.string()), ("cause", pa.string()),
        ("single_threaded", pa.bool_()), ("no_exec_contact", pa.bool_()),
        ("manager_turnover", pa.bool_()), ("share_of_wallet_after", pa.float64()),
    ]),
    "action_assignments": pa.schema([
        ("action_id", pa.string()), ("account_id", pa.string()), ("action", pa.string()),
        ("assignment", pa.string()),
    ]),
    "action_effects": pa.schema([
        ("action", pa.string()), ("title", pa.string()), ("technique", pa.string()),
        ("cause", pa.string()), ("owner", pa.string()), ("effect_log_odds", pa.float64()),
        ("effect_months", pa.int64()), ("assigned_random", pa.int64()),
        ("assigned_targeted", pa.int64()),
    ]),
}


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote.

    ``rows`` counts rows per table, the ground truth as ``truth/<name>``; ``start`` and ``end``
    are the first and last day of the history.
    """

    rows: dict[str, int]
    start: date
    end: date
    seconds: float
    accounts: int
    seed: int


def simulate(
    accounts: int,
    years: int,
    seed: int,
    out: Path,
    *,
    end: date = date(2025, 12, 31),
    file_format: str = "parquet",
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Simulate a key-account world and write it to ``out`` in the data contract's format.

    Parameters
    ----------
    accounts : int
        Number of accounts (most exist before the history starts, some join during it).
    years : int
        Length of the history in years; it ends on ``end`` (inclusive).
    seed : int
        Non-negative seed; the same seed and arguments give byte-identical files.
    out : Path
        Output folder: one file per data-contract table (``orders``, ``accounts``,
        ``interactions``, ``complaints``, ``deliveries``, ``actions``) and the ground truth
        under ``out/truth/`` (``account_months``, ``defections``, ``action_effects``,
        ``action_assignments``; always Parquet).
    end : date
        Last day of the history.
    file_format : str
        ``parquet`` or ``csv`` for the data-contract tables.
    progress : callable, optional
        Called as ``progress(accounts_done, accounts)`` after each chunk of accounts.

    Returns
    -------
    SimulationSummary
        Rows written per table, the history's first and last day, and the time taken.

    Notes
    -----
    The ground truth, in ``out/truth/``:

    ``account_months``
        One row per account and month of the history from the account's creation: latent
        ``competitor_pressure`` and ``unmet_needs`` (0..1), ``quality_issues`` and
        ``delivery_issues`` (incidents that month), ``open_complaints`` at month end and
        ``complaint_pressure`` (open complaints weighted by severity and age, plus badly
        resolved ones), ``contacts`` (buyer roles in reach; ``single_threaded`` when one),
        ``exec_contact`` (an executive met the account within three months),
        ``manager_changed`` (new account manager this month), ``own_business`` (the account's
        own activity, including unobservable budget cuts), ``share_of_wallet``,
        ``expected_revenue``, ``hazard`` (probability that a defection starts this month, and
        by cause) and ``state``: ``active``, ``partial`` (share of wallet eroding or eroded;
        also the wind-down months of a full defection) or ``defected`` (no more orders).
    ``defections``
        One row per account that defected: ``onset_month`` (erosion starts),
        ``defection_month`` (the onset for a partial defection; for a full one, the first
        month without orders: none are written from that month on, and it may lie after the
        end), ``kind``, ``cause``, the aggravators at onset and ``share_of_wallet_after``.
    ``action_effects``
        Per action type: technique, cause addressed, owner, the true shift of that cause's
        monthly hazard in log-odds during ``effect_months`` months after the action, and how
        many were assigned at random and targeted on observed signals.
    ``action_assignments``
        Each action's id and whether it was ``random`` or ``targeted``.
    """
    if accounts <= 0 or years <= 0:
        raise ValueError(f"accounts and years must be positive, got {accounts} and {years}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    began = time.perf_counter()
    end = date(end.year, end.month, end.day)  # a datetime or Timestamp counts as its day
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    calendar = Calendar.build(years, end)
    drivers = SharedDrivers.draw(calendar, accounts, _rng(seed, 0))
    width = max(6, len(str(accounts)))

    sinks = {name: contract_sink(out, name, file_format) for name in TABLES}
    truth = {
        name: TableSink(out / "truth" / f"{name}.parquet", schema)
        for name, schema in TRUTH_SCHEMAS.items() if name != "action_effects"
    }
    counts = np.zeros((len(catalog.ACTION_TYPES), 2), dtype=np.int64)
    try:
        for chunk, first in enumerate(range(0, accounts, CHUNK_ACCOUNTS)):
            rng = _rng(seed, chunk + 1)
            pop = Population.draw(rng, first, min(CHUNK_ACCOUNTS, accounts - first), calendar,
                                  drivers)
            rows = simulate_chunk(rng, pop, calendar, drivers)
            counts += rows.action_counts
            ids = pop.account_ids(width)
            sinks["accounts"].write(pop.table(rng, width, rows.final_manager, drivers))
            _write_events(sinks, truth, rows, ids, pop, drivers, calendar, width)
            if progress is not None:
                progress(first + pop.size, accounts)
    finally:
        for sink in (*sinks.values(), *truth.values()):
            sink.close()
    effects = _action_effects(counts)
    effects_sink = TableSink(out / "truth" / "action_effects.parquet", effects.schema)
    effects_sink.write(effects)
    effects_sink.close()

    rows_written = {name: sink.rows for name, sink in sinks.items()}
    rows_written.update({f"truth/{name}": sink.rows for name, sink in truth.items()})
    rows_written["truth/action_effects"] = effects.num_rows
    return SimulationSummary(
        rows=rows_written, start=calendar.start, end=calendar.end,
        seconds=time.perf_counter() - began, accounts=accounts, seed=seed,
    )


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _sorted(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows ordered by account, then day (stable, so equal keys keep their drawn order)."""
    order = np.lexsort((rows["day"], rows["account"]))
    return {k: v[order] for k, v in rows.items()}


def _month_start(calendar: Calendar, month: np.ndarray) -> np.ndarray:
    """First day (days since 1970) of history month ``month`` (may lie past the end)."""
    first = calendar.first_day[calendar.burn_in].astype("datetime64[D]").astype("datetime64[M]")
    return (first + month).astype("datetime64[D]").astype(np.int64)


def _write_events(sinks: dict[str, TableSink], truth: dict[str, TableSink], rows: ChunkRows,
                  ids: pa.Array, pop: Population, drivers: SharedDrivers, calendar: Calendar,
                  width: int) -> None:
    end_day = int(calendar.hi[-1])

    def with_id(name: str, columns: dict[str, np.ndarray]) -> dict[str, pa.Array]:
        prefix, digits = ID_FORMAT[name]
        start = sinks[name].rows
        number = start + 1 + np.arange(columns["account"].size)
        id_column = TABLES[name].id_column
        return {id_column: fixed_ids(prefix, number, digits),
                "account_id": ids.take(columns["account"])}

    o = _sorted(rows.tables["orders"])
    sinks["orders"].write(pa.table({
        **with_id("orders", o),
        "order_date": day_timestamps(o["day"]),
        "revenue": o["revenue"],
        "quantity": o["quantity"],
        "product_category": lookup_strings(o["category"], catalog.PRODUCT_CATEGORIES),
        "discount_amount": o["discount_amount"],
        "gross_margin": o["gross_margin"],
    }))

    d = _sorted(rows.tables["deliveries"])
    arrived = d["delivered"] <= end_day
    sinks["deliveries"].write(pa.table({
        **with_id("deliveries", d),
        "promised_date": day_timestamps(d["day"]),
        "delivered_date": day_timestamps(d["delivered"], arrived),
        "quantity_ordered": d["quantity_ordered"],
        "quantity_delivered": pa.array(d["quantity_delivered"], mask=~arrived),
    }))

    c = _sorted(rows.tables["complaints"])
    resolved = c["resolved"] <= end_day
    sinks["complaints"].write(pa.table({
        **with_id("complaints", c),
        "opened_at": day_timestamps(c["day"]),
        "resolved_at": day_timestamps(c["resolved"], resolved),
        "category": lookup_strings(c["category"], COMPLAINT_CATEGORIES),
        "severity": lookup_strings(c["severity"], SEVERITIES),
        "satisfaction": pa.array(c["satisfaction"], mask=~resolved),
    }))

    i = _sorted(rows.tables["interactions"])
    sinks["interactions"].write(pa.table({
        **with_id("interactions", i),
        "occurred_at": day_timestamps(i["day"]),
        "channel": lookup_strings(i["channel"], CHANNELS),
        "direction": lookup_strings(i["direction"], DIRECTIONS),
        "rep_id": lookup_strings(i["rep"], drivers.people),
        "contact_id": fixed_ids("P", i["contact"], width + 1),
        "contact_role": lookup_strings(i["role"], CONTACT_ROLES),
        "contact_seniority": lookup_strings(i["seniority"], CONTACT_SENIORITY),
        "our_seniority": lookup_strings(i["our_seniority"], OUR_SENIORITY),
        "sentiment": i["sentiment"],
    }))

    a = _sorted(rows.tables["actions"])
    names = [t.action for t in catalog.ACTION_TYPES]
    action_columns = with_id("actions", a)
    sinks["actions"].write(pa.table({
        **action_columns,
        "taken_at": day_timestamps(a["day"]),
        "action": lookup_strings(a["action"], names),
        "owner": lookup_strings(a["action"], [t.owner for t in catalog.ACTION_TYPES]),
        "note": lookup_strings(a["action"], [t.title for t in catalog.ACTION_TYPES]),
    }))
    truth["action_assignments"].write(pa.table({
        **action_columns,
        "action": lookup_strings(a["action"], names),
        "assignment": lookup_strings((~a["random"]).astype(np.int64), ("random", "targeted")),
    }))

    m = rows.tables["account_months"]
    derived = {
        "account_id": ids.take(m["account"]),
        "month": day_timestamps(m["month"]),
        "single_threaded": m["contacts"] <= 1,
        "state": lookup_strings(m["state"], catalog.STATES),
    }
    truth["account_months"].write(pa.table({
        name: derived[name] if name in derived else m[name]
        for name in TRUTH_SCHEMAS["account_months"].names
    }))

    f = rows.tables["defections"]
    truth["defections"].write(pa.table({
        "account_id": ids.take(f["account"]),
        "onset_month": day_timestamps(_month_start(calendar, f["onset"])),
        "defection_month": day_timestamps(_month_start(calendar, f["defection"])),
        "kind": lookup_strings(f["full"].astype(np.int64), catalog.KINDS),
        "cause": lookup_strings(f["cause"], catalog.CAUSES),
        "single_threaded": f["single_threaded"],
        "no_exec_contact": f["no_exec_contact"],
        "manager_turnover": f["manager_turnover"],
        "share_of_wallet_after": f["share_after"],
    }))


def _action_effects(counts: np.ndarray) -> pa.Table:
    types = catalog.ACTION_TYPES
    return pa.table({
        "action": [t.action for t in types],
        "title": [t.title for t in types],
        "technique": [t.technique for t in types],
        "cause": [t.cause for t in types],
        "owner": [t.owner for t in types],
        "effect_log_odds": [t.effect for t in types],
        "effect_months": [t.months for t in types],
        "assigned_random": counts[:, 0],
        "assigned_targeted": counts[:, 1],
    }, schema=TRUTH_SCHEMAS["action_effects"])
