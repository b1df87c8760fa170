"""One text rule: a number or a boolean in a text column reads the same on every path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.text import (
    SURROUNDING_SPACES,
    TEXT,
    arrow_texts,
    arrow_without_surrounding_spaces,
    text_of,
    texts_of,
    without_surrounding_spaces,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("12.0", "12.0"),
        (12, "12"),
        (12.0, "12"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e-05, "1e-05"),
        (9999999999999998.0, "9999999999999998"),
        (1e16, "1e+16"),
        (2**70, str(2**70)),
        (True, "true"),
        (np.False_, "false"),
        (np.int32(7), "7"),
        (np.float32(0.1), "0.1"),
        (np.float32(16777216.0), "16777216"),
        (Decimal("12.00"), "12"),
        (Decimal("2.50"), "2.5"),
        (float("inf"), None),
        (float("nan"), None),
        (b"L0001", "L0001"),
        ("caf\u00e9".encode(), "caf\u00e9"),
        (b"caf\xe9", None),
        (None, None),
    ],
)
def test_text_of_writes_numbers_and_booleans_by_one_rule(value: Any, text: str | None) -> None:
    assert text_of(value) == text


def _by_value(values: list[Any]) -> list[str | None]:
    return [text_of(v) for v in values]


def _floats(width: int) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(width=width),  # type: ignore[arg-type]
        st.integers(-(10**17), 10**17).map(float),
        st.floats(2.0**53, 1e16).map(np.floor),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _floats(64)), max_size=20))
def test_a_float_column_reads_as_its_values_do_one_by_one(values: list[float | None]) -> None:
    column = pd.Series(values, dtype=np.float64)

    text, not_text = texts_of(column)

    assert text.dtype == TEXT
    expected = _by_value(column.tolist())
    assert [None if pd.isna(t) else t for t in text] == expected
    present = column.notna().to_numpy()
    assert not_text.tolist() == (present & ~np.isfinite(column.to_numpy())).tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(_floats(32), max_size=20))
def test_a_float32_column_reads_in_its_own_precision(values: list[float]) -> None:
    numbers = np.array(values, dtype=np.float32)

    text, _ = arrow_texts(pa.array(numbers))

    assert text.to_pylist() == _by_value(list(numbers))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=20))
def test_a_nullable_integer_column_keeps_every_digit(values: list[int | None]) -> None:
    text, not_text = texts_of(pd.Series(values, dtype="Int64"))

    assert [None if pd.isna(t) else t for t in text] == _by_value(values)
    assert not not_text.any()


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([True, False]),
        pd.Series([True, None], dtype="boolean"),
        pd.Series([True, None, "x", 7, 7.0, float("inf")], dtype=object),
        pd.Series(["a", None], dtype=object),
        pd.Series(["a", None], dtype=TEXT),
    ],
)
def test_every_column_type_reads_as_its_values_do_one_by_one(column: pd.Series) -> None:
    values = [None if v is pd.NA else v for v in column.tolist()]

    text, not_text = texts_of(column)

    assert text.dtype == TEXT
    assert [None if pd.isna(t) else t for t in text] == _by_value(values)
    assert not_text.tolist() == [v == float("inf") for v in values]


def test_arrow_bytes_read_as_utf8_text_and_only_bad_bytes_or_infinity_are_not_text() -> None:
    utf8, utf8_flags = arrow_texts(pa.array([b"L1", None, "caf\u00e9".encode()], pa.binary()))
    mixed, mixed_flags = arrow_texts(pa.array([b"L1", b"caf\xe9", None], pa.large_binary()))
    floats, float_flags = arrow_texts(pa.array([None, 1.0, float("nan"), float("inf")]))

    assert utf8.to_pylist() == ["L1", None, "caf\u00e9"]
    assert mixed.to_pylist() == ["L1", None, None]
    assert floats.to_pylist() == [None, "1", None, None]
    assert utf8_flags.tolist() == [False, False, False]
    assert mixed_flags.tolist() == [False, True, False]
    assert float_flags.tolist() == [False, False, False, True]  # NaN is missing, not a problem


def test_surrounding_spaces_are_what_python_strips_and_arrow_trims_the_same() -> None:
    every_space = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
    ids = pa.array([" L1", "L1\u00a0\u3000", "\tL 1\x1c", "\u200bL1", None])

    trimmed = arrow_without_surrounding_spaces(ids).to_pylist()

    assert every_space == SURROUNDING_SPACES
    assert trimmed == ["L1", "L1", "L 1", "\u200bL1", None]
    assert trimmed[:4] == [without_surrounding_spaces(i) for i in ids.to_pylist()[:4]]
