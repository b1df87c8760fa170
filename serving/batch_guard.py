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
) -> list[str]:
    """Why the job must not publish from these inputs (empty when it may).

    Args:
        input_rows: rows per table file (a table without a file has no entry).
        rejects: the rows set aside (``batch_output.REJECTS_SCHEMA``: ``table`` and
            ``reason`` are read, counted by Arrow).
        allow_missing: guarded tables that may be absent or empty.
        max_rejected_share: the largest share of any table's rows that may be set aside.
        notes: the loader's warnings; one about a guarded table (a file not read that may
            be it, ``features.table_names.absent_table_warnings``) joins its problem.
    """
    notes = list(notes)
    problems = [
        _absent_problem(table, means, notes)
        for table, means in GUARDED_TABLES.items()
        if input_rows.get(table, 0) == 0 and table not in allow_missing
    ]
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
