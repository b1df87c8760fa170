"""What a batch job refuses to publish from: inputs that would route the wrong people.

The contract lets ``consent`` and ``opportunities`` be absent, and sets aside any row that
breaks it, yet a nightly export that lost its consent file, or whose consent ids or
activity times changed form upstream, would still be scored and imported: unsubscribed
leads routed to contact programs, won customers to nurture, every lead scored as if it had
no history. ``input_problems`` names each such case; ``serving.batch.finish`` then fails the
job before anything is published (exit 1; the local engine keeps its work, so a rerun that
accepts them, with ``BatchRequest.allow_missing`` or a larger ``max_rejected_share``, only
publishes). Accepted, an absent table is still a warning (``allowed_absence_warnings``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from features.loading import LEAD_SET_ASIDE, SPACED_LEAD_ID
from serving.batch_output import LEAD_KNOWN_COLUMN, LEAD_MOVED_COLUMN

#: An optional table whose absence changes who is contacted.
GuardedTable = Literal["consent", "opportunities"]
#: Those tables, and how their absence changes it.
GUARDED_TABLES: dict[GuardedTable, str] = {
    "consent": (
        "no lead counts as unsubscribed or do-not-contact, so every such lead could be "
        "routed to a contact program"
    ),
    "opportunities": (
        "rejections whose lead has since had an opportunity (won customers among them) "
        "look open and are routed to nurture"
    ),
}
#: What a row of a guarded table that names no lead of the export would have changed.
UNMATCHED_MEANS: dict[GuardedTable, str] = {
    "consent": (
        "an opt-out among them is applied to no lead, whose lead could be routed to a "
        "contact program"
    ),
    "opportunities": (
        "a deal among them closes no rejection, whose lead (a won customer, perhaps) could "
        "be routed to nurture"
    ),
}
#: The reasons of set-aside rows that do name a lead of the leads file: one whose own row
#: was set aside (never scored), or one read loosely (withheld, ``chunk_scoring.FailClosed``).
NAMES_A_LEAD = pa.array([f"lead_id: {LEAD_SET_ASIDE}", f"lead_id: {SPACED_LEAD_ID}"])
#: The default largest share of a table's rows that may be set aside.
DEFAULT_MAX_REJECTED_SHARE = 0.05
#: How many of a table's most common reasons a refusal names.
COMMON_REASONS = 3


def input_problems(
    input_rows: Mapping[str, int],
    rejects: pa.Table,
    allow_missing: Collection[str],
    max_rejected_share: float,
    notes: Iterable[str] = (),
    allow_unmatched: Collection[str] = (),
) -> list[str]:
    """Why the job must not publish from these inputs (empty when it may).

    Args:
        input_rows: rows per table file (a table without a file has no entry).
        rejects: the rows set aside (``batch_output.CHUNK_REJECTS_SCHEMA``: ``table``,
            ``reason``, ``lead_known`` and ``lead_moved`` are read, counted by Arrow).
        allow_missing: guarded tables that may be absent or empty.
        max_rejected_share: the largest share of any table's rows that may be set aside.
        notes: the loader's warnings; one about a guarded table (a file not read that may
            be it, ``features.table_names.absent_table_warnings``) joins its problem.
        allow_unmatched: guarded tables whose set-aside rows may name no lead of the
            export (``unmatched_problems``).
    """
    notes = list(notes)
    problems = [
        _absent_problem(table, means, notes)
        for table, means in GUARDED_TABLES.items()
        if input_rows.get(table, 0) == 0 and table not in allow_missing
    ]
    problems += unmatched_problems(rejects, allow_unmatched)
    set_aside = _counts(rejects.column("table"))
    for table, rows in input_rows.items():
        share = set_aside[table] / rows if rows else 0.0
        if share > max_rejected_share:
            of_table = rejects.filter(pc.equal(rejects.column("table"), table))
            problems.append(
                f"{set_aside[table]:,} of the {rows:,} rows of {table} ({share:.1%}) were set "
                f"aside, more than --max-rejected-share {max_rejected_share:g} allows; most "
                f"often: {_most_common(_counts(of_table.column('reason')))}"
            )
    return problems


def unmatched_problems(rejects: pa.Table, allow_unmatched: Collection[str]) -> list[str]:
    """A problem for each guarded table with set-aside rows that name no lead of the export.

    A set-aside row that names a lead withholds that lead (fail closed), and one whose lead's
    own row was set aside concerns a lead that is not scored; one whose ``lead_id`` names
    none, as written or read loosely (an id that changed form upstream, ``L0000019``
    exported as ``19``; a blank one), can withhold nobody, however few such rows there
    are: an opt-out among them leaves its lead open to contact. (A row set aside first for
    another problem, whose lead's row was set aside too, counts as naming none: the
    refusal errs on the safe side.) Unless ``allow_unmatched``
    accepts them (a CRM that keeps consent of deleted leads), any such row refuses the job.
    """
    if not rejects.num_rows:
        return []
    problems = []
    named = pc.or_(rejects.column(LEAD_KNOWN_COLUMN), rejects.column(LEAD_MOVED_COLUMN))
    named = pc.or_(pc.fill_null(named, False), pc.is_in(rejects.column("reason"), NAMES_A_LEAD))
    unmatched = rejects.filter(pc.invert(named))
    counts = _counts(unmatched.column("table"))
    for table, means in UNMATCHED_MEANS.items():
        if counts[table] and table not in allow_unmatched:
            of_table = unmatched.filter(pc.equal(unmatched.column("table"), table))
            rows = "1 row" if counts[table] == 1 else f"{counts[table]:,} rows"
            problems.append(
                f"{rows} of {table} set aside name no lead of the export (most often: "
                f"{_most_common(_counts(of_table.column('reason')))}): {means}; an id that "
                f"changed form upstream does this. If they truly name no lead, pass "
                f"--allow-unmatched {table}"
            )
    return problems


def allowed_absence_warnings(
    input_rows: Mapping[str, int], allow_missing: Collection[str]
) -> list[str]:
    """A warning for each guarded table absent or empty that ``allow_missing`` accepted: the
    output was routed without it."""
    return [
        f"the {table} table is absent or empty, as --allow-missing {table} accepts: {means}"
        for table, means in GUARDED_TABLES.items()
        if input_rows.get(table, 0) == 0 and table in allow_missing
    ]


def _absent_problem(table: str, means: str, notes: list[str]) -> str:
    """The problem of an absent or empty guarded table, with the loader's note about it (a
    file under a name not read is more often the cause than a table truly missing)."""
    about = [note for note in notes if note.startswith(f"no {table} table")]
    found = f" ({'; '.join(about)})" if about else ""
    return (
        f"the {table} table is absent or empty{found}: {means}; if it truly is, pass "
        f"--allow-missing {table}"
    )


def _counts(values: pa.ChunkedArray) -> Counter[str]:
    """How many times each value occurs (Arrow's count, then one Python entry per value)."""
    counted = pc.value_counts(values)
    values, counts = counted.field("values").to_pylist(), counted.field("counts").to_pylist()
    return Counter(dict(zip(values, counts, strict=True)))


def _most_common(reasons: Counter[str]) -> str:
    """The most common reasons with their counts (reasons name columns and rules, never
    values)."""
    return "; ".join(
        f"{reason} ({count:,})" for reason, count in reasons.most_common(COMMON_REASONS)
    )
