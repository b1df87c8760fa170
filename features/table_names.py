"""Names in an export directory that hold a contract table, whether a reader takes them or not.

Each reader takes a table from exactly named entries only: the loader and the local batch
job from a file ``<table>.parquet`` or ``<table>.csv``, the Spark engine from
``<table>.parquet`` or a ``<table>/`` dataset. Anything else is not read, and a table not
read counts as absent: an optional one as empty, which for ``consent`` means that every
lead is subscribed and may be contacted. So an entry that plainly holds a table under
another name (``consent.CSV``, ``Consent.csv``, ``consent.csv.gz``, a directory where a
file is expected) is refused, naming it and what the reader takes instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from features.contract import TABLES_BY_NAME
from features.problems import Problem

#: Format and compression suffixes of a file that holds a table, in lower case.
TABLE_SUFFIXES = frozenset(
    {"csv", "tsv", "txt", "parquet", "pq", "json", "jsonl", "ndjson", "xlsx", "xls"}
    | {"gz", "gzip", "bz2", "xz", "zip", "zst", "zstd", "snappy"}
)


def table_named(name: str) -> str | None:
    """The contract table that an entry called ``name`` plainly holds, if any.

    That is a table's name in any case, alone or followed by format and compression
    suffixes only: ``Consent``, ``consent.CSV`` and ``consent.csv.gz`` hold ``consent``;
    ``consent.csv.md5`` and ``consent_2024.csv`` do not.
    """
    stem, *suffixes = name.lower().split(".")
    if stem in TABLES_BY_NAME and all(suffix in TABLE_SUFFIXES for suffix in suffixes):
        return stem
    return None


def unread_table_problems(
    root: str, unread: Iterable[str], reads: str, present: Mapping[str, str]
) -> list[Problem]:
    """A problem for each entry a reader skips that plainly holds a table (``table_named``).

    Args:
        root: the export directory, as the reader names it.
        unread: the names of the entries of ``root`` that the reader does not read.
        reads: what the reader takes as a table, ``{table}`` standing for its name, e.g.
            ``"a file named {table}.parquet or {table}.csv"``.
        present: table name to the entry the reader takes it from, for the tables found;
            another entry of such a table is a second copy (as ``consent.parquet`` beside
            ``consent.csv`` is), never an absent table.
    """
    problems = []
    for name in sorted(unread):
        table = table_named(name)
        if table is None:
            continue
        if table in present:
            message = f"a second file for table {table} beside {present[table]}; keep one"
        else:
            message = (
                f"looks like table {table!r}, but only {reads.format(table=table)} is read "
                "as that table; rename or convert it (as it is, the table would count as absent)"
            )
        problems.append(Problem(f"{root.rstrip('/')}/{name}", message))
    return problems


def both_formats_problem(root: str, first: str, second: str) -> Problem:
    """The problem of a table held under two names a reader takes (``consent.parquet`` and
    ``consent.csv``): which copy is meant cannot be told, so neither is read."""
    return Problem(root.rstrip("/"), f"both {first} and {second} exist; keep one")


#: What an absent optional table means, for the warning that it is absent.
ABSENT_MEANS = {"consent": "every lead counts as subscribed and may be contacted"}


def absent_table_warnings(present: Iterable[str], unread: Iterable[str], reads: str) -> list[str]:
    """A warning for each optional table whose absence changes who is contacted.

    The contract allows ``consent`` to be absent, but then no lead has unsubscribed: a
    consent file the readers do not take (``consent (1).csv``, ``consent_2026-06-30.csv``,
    ``consent.csv.bak``) would pass without a sign. Entries whose name starts with the
    table's name are named (names of files, never their content).

    Args:
        present: the tables found.
        unread: the names of the entries of the export directory that are not read.
        reads: what the reader takes as a table (see ``unread_table_problems``).
    """
    found = set(present)
    names = sorted(unread)
    warnings = []
    for table, means in ABSENT_MEANS.items():
        if table in found:
            continue
        warning = f"no {table} table: {means} (read from {reads.format(table=table)})"
        similar = [name for name in names if name.lower().startswith(table)]
        if similar:
            warning += "; not read: " + ", ".join(similar)
        warnings.append(warning)
    return warnings
