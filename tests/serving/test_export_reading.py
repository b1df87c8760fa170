"""The batch job's CSV reader: the loader's values and errors, whatever columns it skips."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.config import FeatureConfig
from features.csv_fields import csv_read_problem, first_long_record
from features.loading import load_export
from features.problems import ContractError, Problem
from features.table_files import CSV_OPTIONS, read_table_file
from features.utf8 import utf8_problem
from serving.export_reading import file_columns, iter_batches, locate_export
from tests.features.conftest import write_tiny_export

#: Field values that stress the parser: empty, quotes, separators, line breaks, non-ASCII,
#: blanks and words that other readers take for missing values.
VALUES = ["", "x", "a b", "1,5", 'say "hi"', "two\nlines", "cr\rlf", "é", "😀", " ", "NA", "null"]
#: A few bytes of text that is not UTF-8 (Latin-1 "é", a lone continuation, UTF-16's mark).
NOT_UTF8 = [b"caf\xe9", b"\x80", b"\xff\xfe"]


def read_every_column(path: Path, columns: list[str], batch_rows: int) -> list[pa.Table]:
    """The reference: every column converted to text, as the loader reads, then selected."""
    schema = pa.schema([(c, pa.string()) for c in columns])
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        with pd.read_csv(path, **CSV_OPTIONS, chunksize=batch_rows) as reader:
            tables = [
                pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False)
                for frame in reader
            ]
    return tables or [schema.empty_table()]


def expected_outcome(path: Path, columns: list[str], batch_rows: int) -> list[pa.Table] | Problem:
    """What the batch reader must give for ``path``.

    A file that is not UTF-8 is refused before it is parsed, naming its first bad byte; any
    other file gives the reference's batches, or the reference's error as a problem.
    """
    not_utf8 = utf8_problem(path)
    if not_utf8 is not None:
        return not_utf8
    try:
        return read_every_column(path, columns, batch_rows)
    except (pd.errors.ParserError, pd.errors.ParserWarning, KeyError) as error:
        return csv_read_problem(path, error)


def refused_alike(batch: Callable[[], object], loader: Callable[[], object]) -> list[Problem]:
    """The problems for which a batch reader call and a loader call both refuse (asserted
    to be the same problems)."""
    with pytest.raises(ContractError) as raised:
        batch()
    with pytest.raises(ContractError) as loaded:
        loader()
    assert raised.value.problems == loaded.value.problems
    return raised.value.problems


def _field(value: str, quoted: bool) -> str:
    if quoted or any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A CSV file as bytes, sometimes malformed or not UTF-8, and its header's names."""
    width = draw(st.integers(1, 5))
    names = [f"c{i}" for i in range(width)]
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [",".join(_field(name, draw(st.booleans())) for name in names)]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["row"] * 6 + ["long", "short", "trailing", "blank", "odd"]))
        fields = draw(st.lists(st.sampled_from(VALUES), min_size=width, max_size=width))
        fields = [_field(v, draw(st.booleans())) for v in fields]
        if kind == "long":
            fields += [_field(draw(st.sampled_from(VALUES)), False)]
        elif kind == "short":
            fields = fields[: draw(st.integers(0, width - 1))]
        elif kind == "trailing":
            fields += [""]
        elif kind == "blank":
            fields = [draw(st.sampled_from(["", "  ", "\t"]))]
        elif kind == "odd":  # quotes where CSV does not expect them
            fields[-1] = draw(st.sampled_from(['a"b', '"a"b', '"a""', 'x "y"']))
        lines.append(",".join(fields))
    text = ending.join(lines) + draw(st.sampled_from([ending, ""]))
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.sampled_from([False] * 9 + [True])):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.sampled_from(NOT_UTF8)) + data[cut:]
    return data, names


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(file=csv_files(), choice=st.data(), batch_rows=st.integers(1, 10))
def test_the_columns_read_hold_what_reading_every_column_gives(
    tmp_path: Path, file: tuple[bytes, list[str]], choice: st.DataObject, batch_rows: int
) -> None:
    # Given any CSV, well formed or not, and any choice of the columns to read
    data, names = file
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    chosen = choice.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    columns = [name for name in names if name in chosen]

    # When the batch reader reads them
    try:
        got: list[pa.Table] | Problem = list(iter_batches(path, columns, batch_rows))
    except ContractError as error:
        got = error.problems[0]

    # Then it gives the batches of the reference, which converts every column, or its error;
    # it refuses a file the reference reads only for a row with more fields than the header
    # (the reference, reading in chunks, does not count the first row of each)
    expected = expected_outcome(path, columns, batch_rows)
    if got != expected:
        assert isinstance(got, Problem)
        assert first_long_record(path) is not None
        assert got.file == str(path)
        unreadable = ("has ", "opens a quote", "not a readable UTF-8 CSV file (")
        assert got.message.startswith(unreadable)


def test_a_long_row_past_the_columns_read_is_refused_with_its_line(tmp_path: Path) -> None:
    # Given a row with a fifth field, after the two columns the job reads
    path = tmp_path / "activities.csv"
    path.write_text("a,b,note,email\n1,2,x,y\n3,4,x,y\n5,6,x,y,stray\n7,8,x,y\n", "utf-8")

    with pytest.raises(ContractError) as raised:
        list(iter_batches(path, ["a", "b"]))

    # Then the file is refused, naming the row, as when every column is read
    (problem,) = raised.value.problems
    assert problem.row == 3
    assert problem.message.startswith("has 5 fields where the header has 4")


def test_text_that_is_not_utf8_is_named_by_its_line_in_a_column_not_read(tmp_path: Path) -> None:
    # Given a Latin-1 "é" in a column the job does not read, past the first read buffer
    path = tmp_path / "leads.csv"
    rows = [f"L{i},someone{i}@example.com" for i in range(40_000)]
    rows[30_000] = "L30000,Jos\xe9@example.com"
    path.write_bytes(b"lead_id,email\n" + "\n".join(rows).encode("latin-1"))

    with pytest.raises(ContractError) as raised:
        list(iter_batches(path, ["lead_id"]))

    # Then the problem names the file, the line (the header is line 1) and why, never the text
    (problem,) = raised.value.problems
    assert problem.file == str(path)
    assert problem.message == (
        "not a readable UTF-8 CSV file: line 30002, character 11 is the byte 0xE9, which is "
        "not UTF-8 (invalid continuation byte); save or export the file as UTF-8"
    )
    assert "Jos" not in str(problem)


def test_a_header_that_is_not_utf8_is_named_as_the_loader_names_it(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes("lead_id,pr\xe9nom\nL1,x\n".encode("latin-1"))

    (problem,) = refused_alike(lambda: file_columns(path), lambda: read_table_file(path))

    assert "line 1, character 11 is the byte 0xE9" in problem.message


def test_a_byte_order_mark_is_read_as_the_loader_reads_it(tmp_path: Path) -> None:
    # Given a CSV export saved with a UTF-8 byte-order mark (as spreadsheet tools save it)
    plain = write_tiny_export(tmp_path / "plain")
    marked = write_tiny_export(tmp_path / "marked")
    for path in marked.iterdir():
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    # When the batch job locates its files and reads the columns it wants
    export = locate_export(marked)
    columns = export.columns("leads", FeatureConfig())

    # Then the first column keeps its name, and the rows are those of the file without it
    assert columns == locate_export(plain).columns("leads", FeatureConfig())
    assert columns[0] == "lead_id"
    read = list(iter_batches(export.files["leads"], columns))
    assert read == list(iter_batches(plain / "leads.csv", columns))
    loaded = pa.Table.from_pandas(read_table_file(export.files["leads"]), preserve_index=False)
    assert pa.concat_tables(read).to_pylist() == loaded.select(columns).to_pylist()


@pytest.mark.parametrize("batch_rows", [1, 2, 3])
def test_a_long_row_that_starts_a_batch_is_refused(tmp_path: Path, batch_rows: int) -> None:
    # Given a long row on the first line of the second batch (pandas does not count the
    # fields of a chunk's first row)
    path = tmp_path / "activities.csv"
    rows = [f"{i},x,y" for i in range(8)]
    rows[batch_rows] = f"{batch_rows},x,y,stray"
    path.write_text("a,b,c\n" + "\n".join(rows) + "\n", encoding="utf-8")

    with pytest.raises(ContractError) as raised:
        list(iter_batches(path, ["a"], batch_rows))

    (problem,) = raised.value.problems
    assert problem.row == batch_rows + 1
    assert problem.message.startswith("has 4 fields where the header has 3")


def test_a_file_not_utf8_is_named_by_its_byte_before_a_long_first_row(tmp_path: Path) -> None:
    # Given an activities file whose first row is too long and whose next row is not UTF-8
    directory = write_tiny_export(tmp_path / "export")
    text = (directory / "activities.csv").read_text(encoding="utf-8")
    first = text.splitlines()[1]
    text = text.replace(first, first + ",extra", 1).replace("\nA2,", "\nA\xe92,", 1)
    (directory / "activities.csv").write_bytes(text.encode("latin-1"))

    (problem,) = refused_alike(lambda: locate_export(directory), lambda: load_export(directory))

    # Then the batch reader names the byte, as the loader does (it checks UTF-8 first)
    assert "is the byte 0xE9, which is not UTF-8" in problem.message


def test_the_batch_job_names_a_semicolon_separated_csv_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write_tiny_export(folder)
    rejections = pd.read_csv(folder / "rejections.csv", dtype=str, keep_default_na=False)
    rejections.to_csv(folder / "rejections.csv", index=False, sep=";")

    with pytest.raises(ContractError) as refused:
        locate_export(folder)

    (problem,) = refused.value.problems
    assert Path(problem.file).name == "rejections.csv"
    assert problem.message.startswith("the header reads as one column holding a semicolon")
