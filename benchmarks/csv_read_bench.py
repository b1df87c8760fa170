"""CSV reading benchmark for the batch job: a leads file with wide columns it does not read.

    .venv/bin/python benchmarks/csv_read_bench.py --rows 300000 --repeats 5

Writes a leads CSV whose four columns the job never reads (``email``, ``first_name``,
``last_name``, ``account_id``) are wide, then times three ways of reading the columns the
job reads, in turns (so that a busy machine slows all of them alike):

- ``batch reader``: ``serving.export_reading.iter_batches``, what ``srl score`` runs;
- ``every column as text``: pandas with the loader's options, every column turned into a
  string, then the wanted ones kept (same values, same errors);
- ``usecols``: pandas restricted to the wanted columns; for comparison only, since it turns
  pandas' field-count check off (a row with more fields than its header passes);
- the field-count pass of Arrow's parser alone (``features.csv_fields``), which the batch
  reader makes first, since pandas does not count the first row of each block.

It prints a Markdown table of the best and median wall time of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.csv_fields import first_long_record
from features.table_files import CSV_OPTIONS
from serving.export_reading import ExportFiles, iter_batches


def write_leads(path: Path, rows: int) -> None:
    """A leads CSV of ``rows`` rows with wide text in the columns the job does not read."""
    number = np.arange(rows)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i:07d}" for i in number],
            "account_id": [f"ACC-{i % 50_000:06d}-{i:032x}" for i in number],
            "created_at": "2025-03-02T10:00:00Z",
            "lead_source": "webinar",
            "industry": "Software",
            "employee_count": rng.integers(1, 5000, rows).astype(str),
            "annual_revenue": rng.uniform(1e5, 1e8, rows).round(2).astype(str),
            "country": "DE",
            "job_title": "Head of Operations",
            "job_level": "director",
            "product_fit": "ideal",
            "email": [f"first.last.{i}@some-company-domain-{i % 977}.example.com" for i in number],
            "first_name": [f"Firstname{i}Withsomelength" for i in number],
            "last_name": [f"Lastname{i}-Doublebarrelled-Surname" for i in number],
        }
    )
    frame.to_csv(path, index=False)


def readers(path: Path, columns: list[str], rows: int) -> dict[str, Callable[[], int]]:
    """Each way of reading ``columns`` of ``path`` (``rows`` rows), returning the rows read."""

    def batch_reader() -> int:
        return sum(batch.num_rows for batch in iter_batches(path, columns))

    def pandas_rows(**options: object) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            with pd.read_csv(path, **CSV_OPTIONS, **options, chunksize=1 << 20) as reader:
                return sum(len(frame[columns]) for frame in reader)

    def field_count_pass() -> int:
        # The pass ``iter_batches`` makes first; the rows are known, it only finds long ones.
        assert first_long_record(path) is None
        return rows

    return {
        "batch reader": batch_reader,
        "every column as text": pandas_rows,
        "usecols (no field-count check)": lambda: pandas_rows(usecols=columns),
        "of which the field-count pass (Arrow)": field_count_pass,
    }


def main() -> None:
    """Write the file, time each reader in turns, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the leads file")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leads.csv"
        write_leads(path, args.rows)
        columns = ExportFiles(path.parent, {"leads": path}).columns("leads", FeatureConfig())
        timed = readers(path, columns, args.rows)
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.repeats):
            for name, read in timed.items():
                started = time.perf_counter()
                assert read() == args.rows
                seconds[name].append(time.perf_counter() - started)
        size = path.stat().st_size / 1e6
    print(f"{args.rows:,} rows, {size:.0f} MB, {len(columns)} columns read of 14")
    print("| reader | best s | median s |\n|---|---:|---:|")
    for name, runs in seconds.items():
        print(f"| {name} | {min(runs):.2f} | {statistics.median(runs):.2f} |")


if __name__ == "__main__":
    main()
