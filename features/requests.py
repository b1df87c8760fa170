"""Scoring request bodies cut from an export: one rejection with the lead's own rows.

Used to show how a marketing platform would call the API for a lead of an export, and to
prove that a lead scores the same from an export and from a request.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd

from features.contract import TABLES_BY_NAME, Kind
from features.loading import Export
from features.records import ScoreRequest


def request_body(
    export: Export,
    rejection_id: str,
    as_of: datetime | pd.Timestamp | None = None,
    *,
    include_personal: bool = False,
    custom_columns: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The JSON body a platform would send to score ``rejection_id`` at ``as_of``.

    All of the lead's rows are included, even those after ``as_of`` (no feature may see
    them, and sending them proves none does; only a later opt-out counts, for suppression),
    and every other rejection of the lead up to the scored one's moment, the same moment
    included, as ``earlier_rejections``: the rows the batch job reads for the lead.
    """
    rejections = export.rejections
    match = rejections.loc[rejections["rejection_id"] == rejection_id]
    if match.empty:
        raise KeyError(f"no rejection {rejection_id!r} in the export")
    rejection = match.iloc[0]
    lead_id = rejection["lead_id"]
    lead_rows = export.leads.loc[export.leads["lead_id"] == lead_id]
    lead = _records(lead_rows, "leads", include_personal, custom_columns)[0]
    own = {
        name: export.tables[name].loc[export.tables[name]["lead_id"] == lead_id]
        for name in ("activities", "opportunities", "consent", "rejections")
    }
    others = own["rejections"]
    earlier = others.loc[
        (others["rejected_at"] <= rejection["rejected_at"])
        & (others["rejection_id"] != rejection_id)
    ]
    body: dict[str, Any] = {
        "lead": lead,
        "rejection": _records(match.iloc[:1], "rejections")[0],
        "activities": _records(own["activities"], "activities"),
        "opportunities": _records(own["opportunities"], "opportunities"),
        "consent": _records(own["consent"], "consent"),
        "earlier_rejections": _records(earlier, "rejections"),
    }
    if as_of is not None:
        body["as_of"] = pd.Timestamp(as_of).isoformat()
    return body


#: Each body field and the contract table its rows come from.
BODY_TABLES = {
    "lead": "leads",
    "rejection": "rejections",
    "activities": "activities",
    "opportunities": "opportunities",
    "consent": "consent",
    "earlier_rejections": "rejections",
}

#: The keys an artifact example keeps, as placeholders: each key's prefix.
PLACEHOLDER_PREFIXES = {
    "lead_id": "L",
    "rejection_id": "R",
    "activity_id": "A",
    "opportunity_id": "O",
}


#: The day an artifact example is scored on: every time and date of the example moves by
#: the same whole number of days to put its ``as_of`` on this day.
EXAMPLE_DAY = pd.Timestamp("2020-01-01", tz="UTC")
#: The rows an artifact example keeps of each list of rows (the last ones).
EXAMPLE_ROWS = 3
#: The column kinds an artifact example keeps (no text, no numbers).
EXAMPLE_KINDS = frozenset({Kind.CATEGORY, Kind.TIMESTAMP, Kind.DATE})


def artifact_example(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` fit to be stored with a model: the request's shape, nothing of the export's lead.

    Keys become placeholders (``L1``, ``R1``, ``R2``, ``A1``, ...), the same original key
    always the same placeholder, so the example still validates and scores. Every text and
    number field is left out (all are optional): free text (``reason_detail``,
    ``job_title``, ``loss_reason``, ``industry``, ...), references to people or companies
    (``account_id``, ``rep_id``), personal data, customers' own columns, and numbers such as
    ``annual_revenue`` that could single the lead out. Categories, times and dates are kept,
    every one moved by the same whole number of days so that ``as_of`` (or the rejection,
    without one) falls on ``EXAMPLE_DAY``: no time matches the export's. Each list keeps its
    last ``EXAMPLE_ROWS`` rows.

    Args:
        body: a request body (``request_body``).
    """
    moment = pd.Timestamp(body.get("as_of") or body["rejection"]["rejected_at"])
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    shift = EXAMPLE_DAY - moment.floor("D")
    placeholders: dict[tuple[str, Any], str] = {}
    example: dict[str, Any] = {}
    for field, value in body.items():
        table = BODY_TABLES.get(field)
        if field == "as_of":
            example[field] = _shifted(value, shift)
        elif table is not None and isinstance(value, list):
            rows = value[-EXAMPLE_ROWS:]
            example[field] = [_neutral_row(row, table, placeholders, shift) for row in rows]
        elif table is not None:
            example[field] = _neutral_row(value, table, placeholders, shift)
    return example


def _neutral_row(
    row: dict[str, Any], table: str, placeholders: dict[tuple[str, Any], str], shift: pd.Timedelta
) -> dict[str, Any]:
    """One row with its keys as placeholders, its times moved by ``shift``, and without
    text or number fields."""
    contract = TABLES_BY_NAME[table]
    neutral: dict[str, Any] = {}
    for name, value in row.items():
        if name in PLACEHOLDER_PREFIXES:
            neutral[name] = _placeholder(name, value, placeholders)
        elif name in contract.column_names:
            kind = contract.column(name).kind
            if kind is Kind.CATEGORY:
                neutral[name] = value
            elif kind in EXAMPLE_KINDS:
                neutral[name] = _shifted(value, shift)
    return neutral


def _shifted(value: Any, shift: pd.Timedelta) -> Any:
    """A time or date (ISO text) moved by ``shift``; a missing one stays missing."""
    if value is None:
        return None
    return (pd.Timestamp(value) + shift).isoformat()


def _placeholder(name: str, value: Any, placeholders: dict[tuple[str, Any], str]) -> str:
    """The placeholder of key ``value`` of column ``name`` (a new one on first sight)."""
    if (name, value) not in placeholders:
        count = sum(1 for seen, _ in placeholders if seen == name)
        placeholders[name, value] = f"{PLACEHOLDER_PREFIXES[name]}{count + 1}"
    return placeholders[name, value]


def score_request(
    export: Export, rejection_id: str, as_of: datetime | pd.Timestamp | None = None
) -> ScoreRequest:
    """``request_body`` validated into a ``ScoreRequest``."""
    return ScoreRequest.model_validate(request_body(export, rejection_id, as_of))


def _records(
    frame: pd.DataFrame,
    table: str,
    include_personal: bool = False,
    custom_columns: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    contract = TABLES_BY_NAME[table]
    columns = [
        c.name for c in contract.columns if c.name in frame and (include_personal or not c.personal)
    ]
    columns += [c for c in custom_columns if c in frame]
    return [
        {name: _json_value(value) for name, value in zip(columns, row, strict=True)}
        for row in frame[columns].itertuples(index=False, name=None)
    ]


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value
