"""Text as every path reads it: one rule for the contract's text columns, in files and requests.

A CSV holds text, and a text column keeps it as written. Parquet and JSON may hold a
number or a boolean where the contract has text (a picklist of codes, numeric CRM ids),
and pandas turns a Parquet integer column with gaps into floats. Every path therefore
writes such a value the same way (``text_of``):

- an integer, or a whole number below 10^16 stored as a float, as its digits:
  ``12``, ``12.0`` and ``Decimal("12.00")`` are all ``12``;
- any other number as the shortest text that reads back as the same number, as Python
  writes it: ``2.5``, ``1e-05``, ``1e+16``;
- a boolean as ``true`` or ``false`` (the spelling of JSON and of Arrow);
- a number that is not finite is not text: a file's NaN is a missing value, as in every
  column, an infinite number is a problem of its row, and a request refuses both (in a
  customer's categorical column, which nothing validates, either is a missing value);
- bytes (Parquet text written without its UTF-8 annotation) as the UTF-8 text they hold;
  bytes that are not UTF-8 are not text, a problem of their row.

So ``12`` from a CSV, ``12`` or ``12.0`` from a Parquet integer or float column and ``12``
or ``12.0`` from JSON are the same industry code, and the same lead.
"""

from __future__ import annotations

import math
import unicodedata
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: How text is held from the file onwards (Arrow-backed strings, not Python objects).
TEXT = pd.StringDtype("pyarrow")

#: Whole floats below this magnitude are written as integers; from here on Python writes
#: floats with an exponent (``1e+16``), and so does this rule.
WHOLE_LIMIT = 1e16


def text_of(value: object) -> str | None:
    """``value`` as the text a text column holds (None: missing, or a non-finite number).

    Text is kept as it is; numbers and booleans are written by the module's rule.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):  # Parquet text written without its UTF-8 annotation
        return _decoded(value)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _float_text(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _decoded(value: bytes) -> str | None:
    """UTF-8 bytes as text; None when they are not UTF-8."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _float_text(value: float | np.floating) -> str | None:
    """A float's digits when whole (and below ``WHOLE_LIMIT``), else its shortest form."""
    if not math.isfinite(value):
        return None
    if value == math.floor(value) and abs(float(value)) < WHOLE_LIMIT:
        return str(int(value))
    return str(value)  # shortest round-trip text in the value's own precision


def _decimal_text(value: Decimal) -> str | None:
    """A decimal's digits when whole (exact, as a JSON integer), else as its float."""
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return _float_text(float(value))


#: ``pd.api.types.infer_dtype`` of a column holding only text and missing values.
_ALL_TEXT = frozenset({"string", "empty"})


def texts_of(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``text_of`` over a column, vectorised for typed columns (Parquet's, pandas').

    Returns:
        The column as ``TEXT`` (same index), and a boolean array marking present values
        that are not text (non-finite numbers; missing in the returned column).
    """
    kind = values.dtype
    if isinstance(kind, pd.StringDtype) or pd.api.types.infer_dtype(values) in _ALL_TEXT:
        text = values if kind == TEXT else values.astype(TEXT)
        return text, np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(kind) or pd.api.types.is_any_real_numeric_dtype(kind):
        text, not_text = arrow_texts(pa.array(values, from_pandas=True))
        typed = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([text])), index=values.index)
        return typed, not_text
    objects = values.astype(object).to_numpy()
    texts = [text_of(v) for v in objects]
    not_text = np.fromiter(
        (t is None and not _missing(v) for v, t in zip(objects, texts, strict=True)),
        dtype=bool,
        count=len(objects),
    )
    return pd.Series(texts, index=values.index, dtype=object).astype(TEXT), not_text


def _missing(value: object) -> bool:
    """A missing value as pandas sees one (None, NaN, NA, NaT)."""
    return value is None or bool(pd.api.types.is_scalar(value) and pd.isna(value))


def arrow_texts(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """``text_of`` over an Arrow column: a string array, and the present values not text."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values.cast(pa.string()), np.zeros(len(values), dtype=bool)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return values.cast(pa.string()), np.zeros(len(values), dtype=bool)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:  # text without its UTF-8 annotation: cast at once when it is all UTF-8
            return values.cast(pa.string()), np.zeros(len(values), dtype=bool)
        except pa.ArrowInvalid:
            pass  # value by value below: the bytes that are not UTF-8 are not text
    if pa.types.is_floating(kind):
        return _float_texts(values)
    texts = [text_of(v) for v in values.to_pylist()]
    present = np.asarray(values.is_valid())
    not_text = present & np.array([t is None for t in texts], dtype=bool)
    return pa.array(texts, pa.string()), not_text


def _float_texts(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Floats by ``_float_text``: whole ones through int64 at once, the rest one by one."""
    numbers = values.to_numpy(zero_copy_only=False)
    present = np.asarray(values.is_valid())
    finite = present & np.isfinite(numbers)
    with np.errstate(invalid="ignore"):
        whole = finite & (np.floor(numbers) == numbers) & (np.abs(numbers) < WHOLE_LIMIT)
    digits = pa.array(np.where(whole, numbers, 0).astype(np.int64)).cast(pa.string())
    others = np.full(len(numbers), None, dtype=object)
    rest = np.flatnonzero(finite & ~whole)
    others[rest] = [_float_text(numbers[i]) for i in rest.tolist()]
    text = pc.if_else(pa.array(whole), digits, pa.array(others, pa.string()))
    return text, present & np.isinf(numbers)


#: The white space around an id that a fail-closed row is still traced through
#: (``serving.chunk_scoring.FAIL_CLOSED_TABLES``): the characters Python's ``str.isspace``
#: accepts (ASCII white space, the separators U+001C-U+001F, and Unicode's White_Space,
#: such as the no-break and ideographic spaces). Written out, so that Python
#: (``str.strip``), Arrow (``utf8_trim``) and Spark (``btrim``) remove the same characters;
#: Spark's ``trim`` alone would remove the ASCII space only.
SURROUNDING_SPACES = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def without_surrounding_spaces(text: str) -> str:
    """``text`` without the ``SURROUNDING_SPACES`` at its ends."""
    return text.strip(SURROUNDING_SPACES)


def arrow_without_surrounding_spaces(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``without_surrounding_spaces`` over an Arrow string column (missing stays missing)."""
    return pc.utf8_trim(texts, characters=SURROUNDING_SPACES)


#: Characters that do not show, removed from an id before it is compared loosely: every
#: format character (Unicode category Cf: the zero-width space, non-joiner and joiner, the
#: word joiner, the byte-order mark, the soft hyphen, the direction marks, embeddings and
#: isolates, ...) of the Basic Multilingual Plane, and the Mongolian vowel separator (a
#: copy from a spreadsheet or a web form carries them unseen). Written out once, so that
#: Python and Spark remove the same characters.
INVISIBLE_CHARACTERS = "".join(
    chr(c) for c in range(0x10000) if unicodedata.category(chr(c)) == "Cf" or c == 0x180E
)
#: Characters that show nothing although they are not format characters of the Basic
#: Multilingual Plane: the control characters that are not white space (NUL, which a CSV
#: reader reads as an empty field, and the rest of C0 and C1), the combining grapheme
#: joiner, the Hangul fillers (U+3164 is the classic "invisible name"), the Khmer inherent
#: vowels, the blank braille pattern, the variation selectors, and the format characters
#: past that plane (musical formatting, shorthand format controls, the tags).
BLANK_LOOKALIKES = "".join(
    chr(c)
    for first, last in (
        (0x0000, 0x0008),
        (0x000E, 0x001B),
        (0x007F, 0x0084),
        (0x0086, 0x009F),
        (0x034F, 0x034F),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180D),
        (0x180F, 0x180F),
        (0x2800, 0x2800),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFFA0, 0xFFA0),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        (0xE0100, 0xE01EF),
    )
    for c in range(first, last + 1)
)
#: What a blank value is made of: white space (``SURROUNDING_SPACES``) and characters that
#: do not show (``INVISIBLE_CHARACTERS``, ``BLANK_LOOKALIKES``). A blank value is a missing
#: one (an unset property that a platform sends as ``" "`` or a lone zero-width space); a
#: blank identifier names nothing, in a file as in a request.
BLANK_CHARACTERS = SURROUNDING_SPACES + INVISIBLE_CHARACTERS + BLANK_LOOKALIKES


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but ``BLANK_CHARACTERS`` (or nothing at all)."""
    return not text.strip(BLANK_CHARACTERS)


def blank_texts(texts: pd.Series) -> np.ndarray:
    """``is_blank`` of each text of a column of strings (False where missing)."""
    trimmed = texts.astype(TEXT).str.strip(BLANK_CHARACTERS)
    return trimmed.eq("").to_numpy(dtype=bool, na_value=False)


def blank_class(syntax: str) -> str:
    """``BLANK_CHARACTERS`` for a regular expression's character class (without its
    brackets). ``syntax`` is ``rust`` (pydantic's core: ``\\x{...}`` escapes) or ``json``
    (a JSON Schema pattern: the characters themselves, which every engine reads, where
    Go's RE2 refuses ECMA's ``\\u`` escapes; none of them is special in a class)."""
    if syntax == "json":
        return BLANK_CHARACTERS
    return "".join(f"\\x{{{ord(c):X}}}" for c in BLANK_CHARACTERS)


#: The full-width forms of ASCII (U+FF01-U+FF5E, typed with an East Asian keyboard) and
#: the ASCII capitals, with what each reads as loosely: the ASCII character, capitals as
#: small letters (one pass, as Spark's ``translate`` makes).
_FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F))
_ASCII_OF_FULL_WIDTH = "".join(chr(c) for c in range(0x21, 0x7F)).lower()
_CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: One translation, written as two strings so that Spark's ``translate`` (a character of
#: ``LOOSE_FROM`` past the end of ``LOOSE_TO`` is removed) does exactly what Python's
#: ``str.translate`` does with ``_LOOSE_TABLE``.
LOOSE_FROM = _FULL_WIDTH + _CAPITALS + INVISIBLE_CHARACTERS
LOOSE_TO = _ASCII_OF_FULL_WIDTH + _CAPITALS.lower()
_LOOSE_TABLE = str.maketrans(LOOSE_FROM[: len(LOOSE_TO)], LOOSE_TO, INVISIBLE_CHARACTERS)


def arrow_loose_ids(texts: pa.Array) -> pa.Array:
    """``loose_id`` of each text of an Arrow string column (missing stays missing).

    An ASCII id, the usual kind, is read loosely by Arrow's kernels (surrounding spaces
    trimmed, capitals in lower case: nothing else of ``loose_id`` applies to ASCII); any
    other goes through ``loose_id`` itself.
    """
    texts = texts.cast(pa.string())
    ascii_only = pc.string_is_ascii(texts).fill_null(True)
    loose = pc.ascii_lower(pc.utf8_trim(texts, characters=SURROUNDING_SPACES))
    if pc.all(ascii_only).as_py() is not False:
        return loose
    others = np.flatnonzero(~np.asarray(ascii_only))
    read = [loose_id(t) for t in texts.take(pa.array(others)).to_pylist()]
    mask = np.zeros(len(texts), dtype=bool)
    mask[others] = True
    return pc.replace_with_mask(loose, pa.array(mask), pa.array(read, pa.string()))


def loose_id(text: str) -> str:
    """An id as a person reads it: without invisible characters, with full-width forms as
    ASCII and ASCII capitals in lower case, then without its ``SURROUNDING_SPACES``.

    Ids are compared as written; the loose form only traces a set-aside opt-out, rejection
    or opportunity whose ``lead_id`` was typed or copied slightly off (``l0000007``,
    ``L0000010`` with a zero-width space, a full-width ``Ｌ``) to the lead it names, so
    that lead is withheld rather than contacted (``serving.chunk_scoring``). Spark computes
    the same form with ``translate`` and ``btrim`` (``serving.spark_export``).
    """
    return text.translate(_LOOSE_TABLE).strip(SURROUNDING_SPACES)
