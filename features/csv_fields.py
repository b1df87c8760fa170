"""Rows of a CSV file with more fields than its header, found by Arrow's CSV parser.

pandas' C parser checks every row's field count against the header, except the first row
of each block it tokenises (every 262,144th data row of a narrow file, and the first row of
each chunk when a file is read in chunks; pandas-dev/pandas#11569): extra fields on exactly
such a row are dropped without an error. Arrow's parser counts every row, so one pass of it
finds the rows to look at; ``features.loading.require_field_counts`` then lets pandas,
counting every row, give its own verdict on them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

#: Large blocks: the pass reads one column and keeps nothing.
BLOCK_BYTES = 1 << 24


def first_long_record(path: Path) -> int | None:
    """The record number of the first row with more fields than the header, or None.

    Records are counted as pandas counts lines in its errors: the header is record 1 and a
    line break inside a quoted value does not start a record. A file Arrow cannot parse
    (an unterminated quote, say) gives the long rows found before that point, if any: the
    reader that follows gives the verdict on the rest.
    """
    found: list[int] = []

    def note_long_rows(row: pa_csv.InvalidRow) -> str:
        if row.actual_columns > row.expected_columns and row.number is not None:
            found.append(row.number)
            return "error"  # the first one is enough: stop reading
        return "skip"

    options = {
        # One thread, so that Arrow numbers the rows; the header is read as a row, so
        # every row is counted against it whatever the column names.
        "read_options": pa_csv.ReadOptions(
            use_threads=False, block_size=BLOCK_BYTES, autogenerate_column_names=True
        ),
        "parse_options": pa_csv.ParseOptions(
            newlines_in_values=True, invalid_row_handler=note_long_rows
        ),
        "convert_options": pa_csv.ConvertOptions(
            include_columns=["f0"], column_types={"f0": pa.string()}
        ),
    }
    try:
        with pa_csv.open_csv(path, **options) as reader:
            for _ in reader:
                pass
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        pass
    return found[0] if found else None
