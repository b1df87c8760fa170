"""Helpers for the batch-job tests: running ``srl score``, corrupting exports, reading output."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.contract import EVENT_TIME_COLUMN, TABLES
from features.text import arrow_texts
from serving.batch_job import BatchRequest
from serving.batch_signals import end_with_parent

SCORED_AT = datetime(2026, 7, 1, 6, 0, 0)
TABLE_NAMES = tuple(t.name for t in TABLES)


def request(data: Path, out: Path, model_dir: Path, **changes: Any) -> BatchRequest:
    """A batch request over ``data`` with the test model, one worker and small chunks."""
    values: dict[str, Any] = {
        "data": str(data),
        "out": out,
        "model_uri": str(model_dir),
        "chunk_leads": 700,
        "workers": 1,
        "scored_at": SCORED_AT,
    }
    values.update(changes)
    return BatchRequest(**values)


def score_command(data: Path, out: Path, model_dir: Path, *options: str) -> list[str]:
    """The ``srl score`` command line for a subprocess."""
    return [
        sys.executable, "-m", "srl", "score", "--data", str(data), "--out", str(out),
        "--model", str(model_dir), *options,
    ]  # fmt: skip


def run_score(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``srl score`` to completion (logs captured)."""
    return subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)


def start_score(command: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``srl score`` in its own process group (so a kill reaches its workers too), with
    the stop signals at their defaults, as a scheduler starts it: a test run started under
    ``nohup`` would otherwise pass on its ignored SIGHUP, which the job rightly keeps. Its
    log goes to ``log`` when given (for a failing test to show), else nowhere."""
    with contextlib.ExitStack() as files:
        stderr = subprocess.DEVNULL if log is None else files.enter_context(log.open("wb"))
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=_env(),
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )


def deaf_worker(ready: str) -> None:
    """A job's worker that SIGTERM cannot end (it ignores it): it ends with its job, says it
    is ready in the file ``ready``, then waits far longer than any test."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end_with_parent(os.getppid())
    Path(ready).write_text("ready", encoding="utf-8")
    time.sleep(600)


def _default_stop_signals() -> None:
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


#: Options of the jobs the resume, stop and lock tests interrupt: chunks small enough that a
#: job is caught mid-run, and one fixed time stamp, so that runs can be compared byte for byte.
CHECKPOINTED_OPTIONS = ("--chunk-leads", "100", "--scored-at", "2026-07-01T06:00:00")


def checkpointed_parts(out: Path) -> list[Path]:
    """The chunk parts the job writing ``out`` has checkpointed so far."""
    return sorted(out.with_name(out.name + ".work").glob("parts-*/part-*.arrow"))


def wait_for_parts(process: subprocess.Popen[bytes], out: Path, parts: int) -> None:
    """Wait until the job writing ``out`` has checkpointed ``parts`` chunks: it is mid-run,
    its workers running."""
    deadline = time.monotonic() + 300
    while len(checkpointed_parts(out)) < parts:
        assert process.poll() is None, "the job ended before it reached that point"
        assert time.monotonic() < deadline, "no checkpoints appeared"
        time.sleep(0.005)


def _env() -> dict[str, str]:
    return {**os.environ, "SRL_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}


def read_output(path: Path) -> pd.DataFrame:
    """A batch output file as a DataFrame (Parquet or CSV, by extension)."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def copy_as_csv(source: Path, target: Path) -> Path:
    """A copy of a Parquet export with every table as CSV text."""
    target.mkdir(parents=True)
    for name in TABLE_NAMES:
        path = source / f"{name}.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            frame.to_csv(target / f"{name}.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return target


#: Added to the numbers of numeric ids: 16 digits, where Arrow writes a float with an
#: exponent (``1.000000000000029e+15``) but the text rule writes its digits.
NUMERIC_ID_BASE = 10**15


def with_numeric_ids(source: Path, target: Path, child_type: pa.DataType | None = None) -> Path:
    """A copy of a Parquet export whose lead ids are numbers (``L0000029`` is
    ``NUMERIC_ID_BASE + 29``): integers in ``leads``, ``child_type`` (default floats, as
    pandas holds an integer column with gaps) in the other tables."""
    return _with_ids(source, target, lambda number, name: _numeric(number, name, child_type))


def with_fractional_ids(source: Path, target: Path) -> Path:
    """A copy of a Parquet export whose lead ids are small fractions (``L0000029`` is
    ``0.00029``): the rule's text of the number in ``leads``, floats in the other tables
    (where Spark alone would write ``2.9E-4``)."""

    def fractional(number: pa.Array, name: str) -> pa.Array:
        fractions = pc.multiply(number.cast(pa.float64()), 1e-5)
        return arrow_texts(fractions)[0] if name == "leads" else fractions

    return _with_ids(source, target, fractional)


def _numeric(number: pa.Array, name: str, child_type: pa.DataType | None) -> pa.Array:
    number = pc.add(number, NUMERIC_ID_BASE)
    return number.cast(pa.int64() if name == "leads" else child_type or pa.float64())


def _with_ids(source: Path, target: Path, ids_of: Callable[[pa.Array, str], pa.Array]) -> Path:
    """A copy of a Parquet export with ``ids_of(number, table)`` as lead ids, where
    ``number`` is the number in each ``L...`` id."""
    target.mkdir(parents=True)
    for name in TABLE_NAMES:
        path = source / f"{name}.parquet"
        if path.exists():
            table = pq.read_table(path)
            number = pc.cast(pc.utf8_slice_codeunits(table["lead_id"], 1), pa.int64())
            ids = ids_of(number, name)
            table = table.set_column(table.schema.get_field_index("lead_id"), "lead_id", ids)
            pq.write_table(table, target / path.name)
    return target


def numeric_id(lead_id: str) -> str:
    """The text of the number ``with_numeric_ids`` gives ``lead_id``."""
    return str(NUMERIC_ID_BASE + int(lead_id[1:]))


def edit_csv(directory: Path, table: str, row: int, column: str, value: str) -> str:
    """Overwrite one cell of a CSV table (``row`` 0-based); returns that row's first column."""
    path = directory / f"{table}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return str(frame.iloc[row, 0])


def appended(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """A generated table with ``rows`` after it, its category columns kept as categories."""
    categories = [c for c in frame if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    plain = frame.astype(dict.fromkeys(categories, object))
    merged = pd.concat([plain, rows], ignore_index=True)
    return merged.astype(dict.fromkeys(categories, "category"))


def copy_export(source: Path, target: Path) -> Path:
    """A copy of an export directory."""
    shutil.copytree(source, target)
    return target


#: A required column per table that is checked for presence (blanking it rejects the row).
REQUIRED_CATEGORY = {
    "leads": "lead_source",
    "activities": "activity_type",
    "rejections": "stage_at_rejection",
    "opportunities": "status",
    "consent": "status",
}


def break_latest_rows(directory: Path) -> None:
    """Blank a required value in every row holding the export's latest timestamp."""
    frames = {n: pd.read_csv(directory / f"{n}.csv", dtype=str) for n in TABLE_NAMES}
    stamps = {n: _timestamps(f, n) for n, f in frames.items()}
    latest = max(s.max().max() for s in stamps.values())
    for name, frame in frames.items():
        rows = stamps[name].eq(latest).any(axis=1).to_numpy()
        if rows.any():
            frame.loc[rows, REQUIRED_CATEGORY[name]] = ""
            frame.to_csv(directory / f"{name}.csv", index=False)


def _timestamps(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    contract = next(t for t in TABLES if t.name == table)
    names = [c.name for c in contract.columns if c.kind.value == "timestamp" and c.name in frame]
    return frame[names].apply(
        lambda column: pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
    )


def closing_opportunities(export_dir: Path) -> pd.DataFrame:
    """Opportunities that alone close their lead's latest rejection (the lead's only one
    created after it), with the lead's row in the leads file (``lead_row``), in that order:
    without such a row, the lead's latest rejection would look open."""
    leads = pd.read_parquet(export_dir / "leads.parquet", columns=["lead_id"])
    rejections = pd.read_parquet(export_dir / "rejections.parquet")
    opportunities = pd.read_parquet(export_dir / "opportunities.parquet")
    latest = rejections.groupby("lead_id")["rejected_at"].max()
    after = opportunities[opportunities["created_at"] > opportunities["lead_id"].map(latest)]
    alone = after[after.groupby("lead_id")["lead_id"].transform("size") == 1]
    position = pd.Series(range(len(leads)), index=leads["lead_id"])
    return alone.assign(lead_row=alone["lead_id"].map(position)).sort_values("lead_row")


def with_set_aside_opportunities(source: Path, target: Path, chunk_leads: int) -> list[str]:
    """A Parquet copy of ``source`` where three closing opportunities are set aside.

    The first lead's opportunity has an amount that is not a number (``12,5k``); a lead in
    a later chunk (of ``chunk_leads`` leads) repeats the opportunity_id of the second lead's,
    so both rows are set aside, in the second lead's chunk. Returns the three leads.
    """
    closing = closing_opportunities(source)
    first, second = closing.iloc[0], closing.iloc[1]
    later = closing[closing["lead_row"] >= 2 * chunk_leads].iloc[0]
    copy_export(source, target)
    frame = pd.read_parquet(target / "opportunities.parquet")
    frame["amount"] = frame["amount"].map(lambda v: None if pd.isna(v) else repr(float(v)))
    row = {r: frame.index[frame["opportunity_id"] == o.opportunity_id][0] for r, o in
           (("first", first), ("later", later))}  # fmt: skip
    frame.loc[row["first"], "amount"] = "12,5k"
    frame.loc[row["later"], "opportunity_id"] = second["opportunity_id"]
    frame.to_parquet(target / "opportunities.parquet", index=False)
    return [str(first["lead_id"]), str(second["lead_id"]), str(later["lead_id"])]


def with_keys_repeated_across_chunks(
    source: Path, target: Path, chunk_leads: int, scored: set[str]
) -> dict[str, str]:
    """A Parquet copy of ``source`` where rows of leads past the second chunk (of
    ``chunk_leads`` leads) repeat the primary key of a first-chunk lead's row, so that they
    are set aside in the first chunk, away from their own lead's:

    - ``scored``: an activity of a lead with an open rejection (one of ``scored``);
    - ``unscored``: an activity of a lead without one;
    - ``stranger``: an activity whose ``lead_id`` names no lead (an e-mail address);
    - ``orphan``: an activity of a lead whose own row is set aside (no lead source);
    - ``withheld``: the opportunity that alone closes a lead's latest rejection, which the
      lead's other set-aside activity (no activity type, in the lead's own chunk) joins.

    Returns the lead of each role (for ``stranger``, the e-mail address).
    """
    copy_export(source, target)
    leads = pd.read_parquet(target / "leads.parquet")
    activities = pd.read_parquet(target / "activities.parquet")
    opportunities = pd.read_parquet(target / "opportunities.parquet")
    position = pd.Series(range(len(leads)), index=leads["lead_id"])
    first_key = activities.at[activities.index[0], "activity_id"]
    closing = closing_opportunities(source)
    withheld = closing[closing["lead_row"] >= 2 * chunk_leads].iloc[0]
    late = activities[activities["lead_id"].map(position) >= 2 * chunk_leads]
    candidates = [lead for lead in late["lead_id"].unique() if lead != withheld["lead_id"]]
    chosen = {"scored": next(lead for lead in candidates if lead in scored)}
    chosen["unscored"] = next(lead for lead in candidates if lead not in scored)
    others = [lead for lead in candidates if lead not in chosen.values()]
    chosen |= {"orphan": others[0], "stranger": others[1]}
    roles = {role: late.index[late["lead_id"] == lead][0] for role, lead in chosen.items()}
    found = {role: str(lead) for role, lead in chosen.items()}
    found["stranger"] = "jane.doe@example.com"
    activities.loc[roles["stranger"], "lead_id"] = found["stranger"]
    activities.loc[list(roles.values()), "activity_id"] = first_key
    activities["activity_type"] = activities["activity_type"].astype(object)
    own = activities.index[activities["lead_id"] == withheld["lead_id"]][0]
    activities.loc[own, "activity_type"] = None
    leads["lead_source"] = leads["lead_source"].astype(object)
    leads.loc[position[found["orphan"]], "lead_source"] = None
    first_opportunity = opportunities["opportunity_id"].iloc[0]
    opportunities.loc[
        opportunities["opportunity_id"] == withheld["opportunity_id"], "opportunity_id"
    ] = first_opportunity
    found["withheld"] = str(withheld["lead_id"])
    changed = {"leads": leads, "activities": activities, "opportunities": opportunities}
    for name, frame in changed.items():
        frame.to_parquet(target / f"{name}.parquet", index=False)
    return found


class DirectoryAppearsAtOutput:
    """Progress that, once the chunks are scored, puts a directory where the output goes."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def start(self, total: int, done: int) -> None:
        """Nothing to show."""

    def advance(self, rows: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """The scoring is over: the output file can no longer be moved into place."""
        self.out.mkdir(parents=True, exist_ok=True)


def with_nanosecond_timestamps(source: Path, target: Path) -> pd.Timestamp:
    """A Parquet copy of ``source`` with every timestamp column in nanoseconds (pandas'
    default): tz-aware, except ``leads.created_at`` (naive, read as UTC), and the first
    activity moved one nanosecond past the export's latest moment. Returns that moment
    rounded up to the microsecond, as the contract reads it: the export's end."""
    target.mkdir(parents=True)
    tables = {n: pq.read_table(source / f"{n}.parquet") for n in TABLE_NAMES}
    latest = max(pc.max(tables[n][c]).value for n, c in EVENT_TIME_COLUMN.items())
    for name, table in tables.items():
        for index, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):
                zone = None if (name, field.name) == ("leads", "created_at") else "UTC"
                column = table[field.name].cast(pa.timestamp("ns", tz=zone))
                if (name, field.name) == ("activities", "occurred_at"):
                    counts = column.cast(pa.int64()).to_numpy().copy()
                    counts[0] = latest * 1000 + 1
                    column = pa.array(counts).cast(pa.timestamp("ns", tz=zone))
                table = table.set_column(index, field.name, column)
        pq.write_table(table, target / f"{name}.parquet")
    return pd.Timestamp(latest + 1, unit="us", tz="UTC")


def contacted_leads(data: Path, model_dir: Path, work: Path) -> tuple[list[str], int]:
    """Leads a clean batch run over ``data`` routes to a contact program, one per
    ``SPACINGS`` (spread from its first to its last, so in different chunks), and how many
    leads that run withheld."""
    from serving.batch import run_batch

    out = work / "clean.parquet"
    clean = run_batch(request(data, out, model_dir))
    contacted = read_output(out).query("not suppressed")["lead_id"]
    spread = np.linspace(0, len(contacted) - 1, len(SPACINGS)).round().astype(int)
    leads = [contacted.iloc[i] for i in spread]
    return leads, int(clean.document["withheld"])


def _full_width(text: str) -> str:
    """``text`` with its ASCII letters and digits in their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


#: How ``with_spaced_consent`` writes each lead's opt-out: a trailing space, a leading
#: space, a trailing no-break space (Unicode white space, which Spark's ``trim`` keeps), a
#: zero-width space, a byte-order mark and spaces, in lower case, in full-width forms.
SPACINGS: tuple[Callable[[str], str], ...] = (
    "{} ".format,
    " {}".format,
    "{}\u00a0".format,
    "{}\u200b".format,
    "\ufeff {} ".format,
    str.lower,
    _full_width,
)
#: An opt-out whose id has a space and names no lead even without it.
STRANGER = "L9999999 "


def with_spaced_consent(source: Path, target: Path, leads: list[str]) -> list[str]:
    """A Parquet copy of ``source`` whose consent table ends with an ``unsubscribed`` row
    for each of ``leads``, its id written with ``SPACINGS``, and one for ``STRANGER``.
    Returns the ids as written."""
    copy_export(source, target)
    consent = pd.read_parquet(target / "consent.parquet")
    written = [spacing(lead) for spacing, lead in zip(SPACINGS, leads, strict=True)]
    rows = pd.DataFrame(
        {
            "lead_id": [*written, STRANGER],
            "changed_at": consent["changed_at"].max(),
            "status": "unsubscribed",
        }
    )
    appended(consent, rows).to_parquet(target / "consent.parquet", index=False)
    return written
