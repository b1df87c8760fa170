"""What an offending cell holds, in words: its kind and length, never its content.

A problem names the file, the column and the row of a bad value, and says why it is bad;
it never quotes the value. A CSV row with a missing or extra field (or a quote left open)
shifts its values into other columns, so any column, even one with a fixed vocabulary,
may hold someone's e-mail address or name, and a quoted value would carry it into
terminals, logs, ``srl validate --json`` and the batch job's files. A description keeps the
message useful: the kind of text found, its length, and a hint when the kind says the
value belongs to another column (the usual sign of a shifted row).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime

import numpy as np
import pandas as pd

from features.contract import Column, Kind, Table, is_email_address
from features.timestamps import near_miss

DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ].*)?")
#: A date written otherwise: day, month and year in either order with '/', '.' or '-'
#: (``31/12/2025``, ``12.31.25``), or the year first with '/' or '.', a time optional.
OTHER_DATE = re.compile(
    r"(\d{1,2}([/.-])\d{1,2}\2\d{2}(\d{2})?|\d{4}([/.])\d{1,2}\4\d{1,2})"
    r"([ T]\d{1,2}:\d{2}(:\d{2})?(\.\d+)?\s*([AaPp][Mm])?)?"
)
NUMBER_LIKE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
#: Groups of three digits set apart by ',' (``1,234.5``), or by '.' or a space with a
#: decimal comma (``1.234,5``, ``1 234,5``).
THOUSANDS = re.compile(r"[+-]?\d{1,3}((,\d{3})+(\.\d+)?|([. ]\d{3})+(,\d+)?)")
WITH_SUFFIX = re.compile(r"[+-]?[$€£]?\d+([.,]\d+)*\s*[A-Za-z%$€£]{1,3}\.?")
#: A short word, as placeholders are (``unknown``, ``n/a``); a long run of letters is not.
WORD = re.compile(r"[^\W\d_]{1,20}([/-][^\W\d_]{1,20})?")
COUNTRY_LIKE = re.compile(r"[A-Z]{2}")
SHIFT_HINT = (
    "the row's values may be shifted (a field missing or added earlier in the row, "
    "or a quote left open)"
)


def describe_cell(
    value: object, column: Column, table: Table, *, shiftable: bool = True
) -> str | None:
    """The offending value of ``column`` in words, or None when it is missing.

    Args:
        value: the cell as read (text from a CSV, any type from Parquet).
        column: the contract column it was read as.
        table: the contract table, whose other vocabularies a shifted value may match.
        shiftable: whether a row's values can shift into the wrong columns, as in a CSV
            (a Parquet file stores each column apart: no hint of a shift then).

    Returns:
        e.g. ``an e-mail address (39 characters): the row's values may be shifted (...)``
        or ``text of letters and spaces (12 characters)``.
    """
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    if isinstance(value, str):
        return _describe_text(value, column, table, shiftable)
    return _describe_native(value)


def _describe_text(value: str, column: Column, table: Table, shiftable: bool) -> str:
    size = f"{len(value)} character{'s' if len(value) != 1 else ''}"
    kind, elsewhere = _kind_of_text(value.strip(), column, table)
    described = f"{kind} ({size})"
    return f"{described}: {SHIFT_HINT}" if elsewhere and shiftable else described


def _kind_of_text(text: str, column: Column, table: Table) -> tuple[str, bool]:
    """The kind of ``text`` and whether that kind says it belongs to another column."""
    if not text:
        return "blank text", False
    if is_email_address(text):
        return "an e-mail address", column.name != "email"
    owner = _vocabulary_owner(text, column, table)
    if owner is not None:
        return _word_of_another_column(owner, column)
    dated = _kind_of_date(text, column)
    if dated is not None:
        return dated
    number = _kind_of_number(text)
    if number is not None:
        return number, column.kind is Kind.CATEGORY
    if COUNTRY_LIKE.fullmatch(text):
        return "two capital letters, like a country code", column.name != "country"
    if WORD.fullmatch(text) and column.kind is not Kind.STRING and column.kind is not Kind.CATEGORY:
        return "a word", False  # in a number or date column, most likely a placeholder
    return f"text of {_characters_of(text)}", False


def _word_of_another_column(owner: str, column: Column) -> tuple[str, bool]:
    """A value of ``owner``'s vocabulary: a sign of a shifted row in a category column, but
    in any other column most likely a placeholder (``unknown``, ``other``, ``high``)."""
    if column.kind is Kind.CATEGORY:
        return f"a value allowed in column {owner!r}", True
    return f"a word (one allowed in column {owner!r})", False


def _kind_of_date(text: str, column: Column) -> tuple[str, bool] | None:
    """A date's kind (ISO 8601 or not), if ``text`` is one; the hint outside date columns."""
    elsewhere = column.kind not in (Kind.TIMESTAMP, Kind.DATE)
    if DATE_LIKE.fullmatch(text):
        mistake = None if elsewhere else near_miss(text)
        return mistake or "text shaped like a date", elsewhere
    if OTHER_DATE.fullmatch(text):
        return "a date not in ISO 8601 form (YYYY-MM-DD)", elsewhere
    return None


def _kind_of_number(text: str) -> str | None:
    """How a number is written, if ``text`` is one (thousands separators before a decimal
    comma, since ``1,234`` reads as both and groups of three decide)."""
    if NUMBER_LIKE.fullmatch(text):
        return "a number"
    if THOUSANDS.fullmatch(text):
        return "a number written with thousands separators"
    if DECIMAL_COMMA.fullmatch(text):
        return "a number written with a decimal comma"
    if WITH_SUFFIX.fullmatch(text):
        return "a number followed by a unit or suffix"
    return None


def _vocabulary_owner(text: str, column: Column, table: Table) -> str | None:
    """The other category column of ``table`` that allows ``text`` (matched as the loader
    matches categories), if any."""
    word = text.lower()
    owners = (
        other.name
        for other in table.columns
        if other.kind is Kind.CATEGORY and other.name != column.name and word in other.vocabulary
    )
    return next(owners, None)


def _characters_of(text: str) -> str:
    """Which sorts of characters ``text`` is made of, e.g. ``letters and spaces``."""
    sorts = [
        name
        for name, present in (
            ("letters", any(c.isalpha() for c in text)),
            ("digits", any(c.isdigit() for c in text)),
            ("spaces", any(c.isspace() for c in text)),
            ("other characters", any(not (c.isalnum() or c.isspace()) for c in text)),
        )
        if present
    ]
    return " and ".join([", ".join(sorts[:-1]), sorts[-1]] if len(sorts) > 1 else sorts)


def _describe_native(value: object) -> str:
    """A value Parquet stored as something other than text."""
    if isinstance(value, bool | np.bool_):
        return "a true/false value"
    if isinstance(value, bytes):
        return f"bytes ({len(value)} bytes)"
    if isinstance(value, datetime | date):
        return "a date or time"
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"a value of type {type(value).__name__}"
    if math.isinf(number):
        return "an infinite number"
    return "a whole number" if number.is_integer() else "a number with a fraction"
