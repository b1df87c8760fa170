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

from collections.abc import Iterable

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


def unread_table_problems(root: str, unread: Iterable[str], reads: str) -> list[Problem]:
    """A problem for each entry a reader skips that plainly holds a table (``table_named``).

    Args:
        root: the export directory, as the reader names it.
        unread: the names of the entries of ``root`` that the reader does not read.
        reads: what the reader takes as a table, ``{table}`` standing for its name, e.g.
            ``"a file named {table}.parquet or {table}.csv"``.
    """
    problems = []
    for name in sorted(unread):
        table = table_named(name)
        if table is not None:
            taken = reads.format(table=table)
            message = (
                f"looks like table {table!r}, but only {taken} is read as that table; "
                "rename or convert it (as it is, the table would count as absent)"
            )
            problems.append(Problem(f"{root.rstrip('/')}/{name}", message))
    return problems
