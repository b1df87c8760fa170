"""A realistic synthetic CRM export: generate the five contract tables and write them.

The history is simulated in three layers (see ``docs/synthetic-data.md``): the population
(``synthetic_population``), the sales journey with rejections, comebacks and deals
(``synthetic_journey``), and engagement plus consent (``synthetic_activity``). This module
turns their arrays into contract tables and writes them atomically as Parquet or CSV.

Example:
    >>> tables = generate_tables(1_000, seed=7)
    >>> sorted(tables)
    ['activities', 'consent', 'leads', 'opportunities', 'rejections']
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import (
    ACTIVITY_TYPES,
    BARRIER_SIDES,
    CONSENT_STATUSES,
    JOB_LEVELS,
    LEAD_SOURCES,
    OPPORTUNITY_STATUSES,
    PRODUCT_FITS,
    REASON_CODES,
    REP_POTENTIALS,
    STAGES,
    TABLES_BY_NAME,
    Kind,
)
from features.output import OutputWriteError, StagedFiles
from features.synthetic_activity import Consent, Events, generate_activities, generate_consent
from features.synthetic_deals import LOSS_REASONS, Opportunities
from features.synthetic_journey import N_REPS, PROGRAMS, Rejections, simulate_journey
from features.synthetic_population import (
    COUNTRIES,
    FAKE_FIRST_NAMES,
    INDUSTRIES,
    SECONDS_PER_DAY,
    TECH_STACKS,
    Population,
    generate_population,
    pick,
)

Format = Literal["parquet", "csv"]
FORMATS: tuple[str, ...] = ("parquet", "csv")
#: The export's snapshot time unless told otherwise, so output never depends on today.
DEFAULT_END = datetime(2026, 6, 30, tzinfo=UTC)
#: Customer-specific lead columns beyond the contract, as real CRM exports carry them.
CUSTOM_LEAD_COLUMNS = ("crm_custom_tech_stack", "crm_custom_web_sessions_12m")


def generate_tables(
    n_leads: int, seed: int, *, end: datetime | None = None, years: float = 4.0
) -> dict[str, pd.DataFrame]:
    """Simulate ``years`` of CRM history for ``n_leads`` leads ending at ``end``.

    Args:
        n_leads: number of leads (people); child tables scale with it.
        seed: random seed; the same seed (and arguments) gives identical tables.
        end: the snapshot time; nothing happens after it. Naive means UTC.
            Defaults to ``DEFAULT_END`` (2026-06-30T00:00:00Z).
        years: how far before ``end`` lead creation starts.

    Returns:
        The five contract tables by name (``leads``, ``activities``, ``rejections``,
        ``opportunities``, ``consent``) with contract column names, UTC timestamps and
        contract vocabularies as categoricals; ``leads`` also has ``CUSTOM_LEAD_COLUMNS``.

    Raises:
        ValueError: if ``n_leads`` < 1 or ``years`` <= 0.
    """
    if n_leads < 1:
        raise ValueError(f"n_leads must be at least 1, got {n_leads}")
    if not years > 0:
        raise ValueError(f"years must be positive, got {years}")
    stop = _end_day(end or DEFAULT_END)
    start = stop - years * 365.25
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
    pop = generate_population(streams[0], n_leads, start, stop)
    journey = simulate_journey(streams[1], pop, stop)
    consent, silence = generate_consent(streams[2], pop, journey, stop)
    events = generate_activities(streams[3], pop, journey, silence, stop)
    event_times = (
        pop.created,
        events.at,
        journey.rejections.at,
        journey.opportunities.created,
        consent.at,
    )
    latest = max(float(times.max(initial=-np.inf)) for times in event_times)
    deals = _closed_by(journey.opportunities, latest)
    lead_ids = make_ids("L", n_leads)
    return {
        "leads": _leads_frame(streams[4], pop, lead_ids),
        "activities": _activities_frame(events, lead_ids),
        "rejections": _rejections_frame(journey.rejections, lead_ids),
        "opportunities": _opportunities_frame(deals, lead_ids),
        "consent": _consent_frame(consent, lead_ids),
    }


def write_export(
    tables: Mapping[str, pd.DataFrame], out: str | Path, fmt: Format
) -> dict[str, Path]:
    """Write tables as ``<table>.<fmt>`` files in ``out``, atomically.

    A new directory is written whole in a hidden sibling directory, then renamed to ``out``
    in one step. Into an existing directory, each file is written under a hidden temporary
    name beside its target and, once all are written, moved into place (each move one
    step), a table file of the same name in the other format removed so the directory
    stays loadable. A failed write leaves no partial file at ``out`` and names the file.

    Args:
        tables: contract table name to frame.
        out: the export directory.
        fmt: ``"parquet"`` or ``"csv"`` (header row, comma, UTF-8, ISO 8601 timestamps in
            UTC with a ``Z`` suffix, dates as ``YYYY-MM-DD``).

    Returns:
        Table name to the written file.

    Raises:
        ValueError: for an unknown format or table name.
        features.output.OutputWriteError: a file could not be written (named by its path
            in ``out``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    unknown = sorted(set(tables) - set(TABLES_BY_NAME))
    if unknown:
        raise ValueError(f"not contract tables: {unknown}")
    target = Path(out)
    if target.is_dir():
        _replace_table_files(tables, target, fmt)
    else:
        _write_new_directory(tables, target, fmt)
    return {name: target / f"{name}.{fmt}" for name in tables}


def _replace_table_files(tables: Mapping[str, pd.DataFrame], target: Path, fmt: Format) -> None:
    with StagedFiles() as staged:
        for name, frame in tables.items():
            staged.write(target / f"{name}.{fmt}", _table_writer(name, frame, fmt))
            for other in FORMATS:
                if other != fmt:
                    staged.remove(target / f"{name}.{other}")
        staged.publish()


def _table_writer(name: str, frame: pd.DataFrame, fmt: Format) -> Callable[[Path], None]:
    return lambda path: _write_table(name, frame, path, fmt)


def _write_new_directory(tables: Mapping[str, pd.DataFrame], target: Path, fmt: Format) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as error:
        raise OutputWriteError.of(target, error) from error
    try:
        for name, frame in tables.items():
            file = f"{name}.{fmt}"
            try:
                _write_table(name, frame, Path(staging) / file, fmt)
            except OSError as error:
                raise OutputWriteError.of(target / file, error) from error
        try:
            os.chmod(staging, 0o755)  # mkdtemp makes it private; an export directory is not
            os.rename(staging, target)
        except OSError as error:
            raise OutputWriteError.of(target, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _closed_by(opportunities: Opportunities, latest: float) -> Opportunities:
    """Deals closed no later than the export's latest event (``latest``, float days: of
    every table's event time, deal openings included).

    Events are moved to office hours, so the last one may fall hours before the simulated
    end; a loader takes that last event as the snapshot and would read a close after it as
    not yet happened (and warn).
    """
    closed = np.where(opportunities.closed > latest, latest, opportunities.closed)
    return replace(opportunities, closed=closed)


def generate_export(
    out: str | Path, n_leads: int, seed: int, fmt: Format = "parquet", years: float = 4.0
) -> dict[str, Path]:
    """Generate ``years`` of history with ``generate_tables`` and write it with
    ``write_export``."""
    return write_export(generate_tables(n_leads, seed, years=years), out, fmt)


def make_ids(prefix: str, n: int) -> np.ndarray:
    """``n`` ids ``<prefix>0000001`` ... (at least seven digits) as an object array."""
    width = max(7, len(str(n)))
    size = len(prefix) + width
    chars = np.empty((n, size), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    number = np.arange(1, n + 1, dtype=np.int64)
    for position in range(size - 1, len(prefix) - 1, -1):
        chars[:, position] = number % 10 + 48
        number //= 10
    # Arrow turns a fixed-width byte buffer into Python strings several times faster than numpy.
    offsets = np.arange(0, (n + 1) * size, size, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.ravel()))
    return ids.to_numpy(zero_copy_only=False)


def _end_day(end: datetime) -> float:
    stamp = pd.Timestamp(end)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return float(stamp.value // 1_000_000_000) / SECONDS_PER_DAY


def _timestamps(days: np.ndarray) -> pd.Series:
    # Floor to whole seconds: monotone, so event order survives and nothing passes the end.
    missing = np.isnan(days)
    seconds = np.floor(np.where(missing, 0.0, days) * SECONDS_PER_DAY).astype(np.int64)
    values = (seconds * 1_000_000).view("datetime64[us]")
    values[missing] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def _dates(days: np.ndarray) -> pd.Series:
    return _timestamps(np.floor(days))


def _labels(vocabulary: Sequence[str], codes: np.ndarray) -> np.ndarray:
    # Code -1 picks the trailing None: missing in, missing out.
    table = np.array([*vocabulary, None], dtype=object)
    return table[codes]


def _category(vocabulary: Sequence[str], codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(vocabulary))


def _whole(values: np.ndarray) -> pd.Series:
    return pd.Series(pd.array(np.where(np.isnan(values), 0, values), dtype="Int64")).mask(
        np.isnan(values)
    )


def _leads_frame(rng: np.random.Generator, pop: Population, lead_ids: np.ndarray) -> pd.DataFrame:
    suffix = np.strings.slice(lead_ids.astype(str), 1, None)
    first = np.array(FAKE_FIRST_NAMES)[pick(rng, [1] * len(FAKE_FIRST_NAMES), pop.size)]
    last = np.strings.add("Lead", suffix)
    email = np.strings.add(np.strings.add(np.strings.lower(first), ".lead"), suffix)
    return pd.DataFrame(
        {
            "lead_id": lead_ids,
            "account_id": _account_ids(pop.account),
            "created_at": _timestamps(pop.created),
            "lead_source": _category(LEAD_SOURCES, pop.source),
            "industry": _labels([name for name, _ in INDUSTRIES], pop.industry),
            "employee_count": _whole(pop.employees),
            "annual_revenue": pop.revenue,
            "country": _labels(COUNTRIES, pop.country),
            "job_title": pop.title,
            "job_level": _category(JOB_LEVELS, pop.level_observed),
            "product_fit": _category(PRODUCT_FITS, pop.product_fit),
            "email": np.strings.add(email, "@example.invalid").astype(object),
            "first_name": first.astype(object),
            "last_name": last.astype(object),
            "crm_custom_tech_stack": _labels(TECH_STACKS, pop.tech_stack),
            "crm_custom_web_sessions_12m": _whole(pop.web_sessions),
        }
    )


def _account_ids(account: np.ndarray) -> np.ndarray:
    """``C...`` ids by account number, None where the CRM holds no account (``MISSING``)."""
    known = account >= 0
    ids = np.full(len(account), None, dtype=object)
    ids[known] = make_ids("C", int(account.max(initial=-1)) + 1)[account[known]]
    return ids


def _activities_frame(events: Events, lead_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "activity_id": make_ids("A", len(events)),
            "lead_id": lead_ids[events.lead],
            "occurred_at": _timestamps(events.at),
            "activity_type": _category(ACTIVITY_TYPES, events.kind),
        }
    )


def _rejections_frame(rejections: Rejections, lead_ids: np.ndarray) -> pd.DataFrame:
    rej = rejections.take(np.argsort(rejections.at, kind="stable"))
    reps = np.array([f"REP{i:03d}" for i in range(1, N_REPS + 1)], dtype=object)
    return pd.DataFrame(
        {
            "rejection_id": make_ids("R", len(rej)),
            "lead_id": lead_ids[rej.lead],
            "rejected_at": _timestamps(rej.at),
            "stage_at_rejection": _category(STAGES, rej.stage),
            "reason_code": _category(REASON_CODES, rej.reason),
            "reason_detail": rej.detail,
            "barrier_side": _category(BARRIER_SIDES, rej.barrier),
            "rep_potential": _category(REP_POTENTIALS, rej.potential),
            "follow_up_date": _dates(rej.follow_up),
            "lead_score_at_rejection": rej.score,
            "recommended_program": _labels(PROGRAMS, rej.program),
            "rep_id": _labels(list(reps), rej.rep),
        }
    )


def _opportunities_frame(opportunities: Opportunities, lead_ids: np.ndarray) -> pd.DataFrame:
    opp = opportunities.take(np.argsort(opportunities.created, kind="stable"))
    return pd.DataFrame(
        {
            "opportunity_id": make_ids("O", len(opp)),
            "lead_id": lead_ids[opp.lead],
            "created_at": _timestamps(opp.created),
            "closed_at": _timestamps(opp.closed),
            "status": _category(OPPORTUNITY_STATUSES, opp.status),
            "amount": opp.amount,
            "loss_reason": _labels(LOSS_REASONS, opp.loss),
        }
    )


def _consent_frame(consent: Consent, lead_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": lead_ids[consent.lead],
            "changed_at": _timestamps(consent.at),
            "status": _category(CONSENT_STATUSES, consent.status),
        }
    )


def _write_table(name: str, frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
        return
    contract = TABLES_BY_NAME[name]
    dates = {c.name for c in contract.columns if c.kind is Kind.DATE}
    columns = [
        _csv_column(table.column(i), field.name in dates) for i, field in enumerate(table.schema)
    ]
    pacsv.write_csv(pa.table(columns, names=table.column_names), path)


def _csv_column(column: pa.ChunkedArray, is_date: bool) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    if not pa.types.is_timestamp(column.type):
        return column
    if is_date:
        return pc.strftime(column.cast(pa.timestamp("s"), safe=False), format="%Y-%m-%d")
    try:
        whole = column.cast(pa.timestamp("s"))
    except pa.ArrowInvalid:  # sub-second values: keep them, printed as fractions
        whole = column.cast(pa.timestamp(column.type.unit))
    return pc.strftime(whole, format="%Y-%m-%dT%H:%M:%SZ")
