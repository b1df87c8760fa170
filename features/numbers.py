"""Numbers as the file loader reads them, for files and requests alike.

A CSV holds text, so the loader reads every number column with pandas' parser
(``pd.to_numeric``): surrounding spaces, signs, decimals and exponents are numbers;
``1_000``, ``true``, ``0x10`` and the empty string are not. A request's number sent as a
JSON string goes through the very same parser, so that a value is a number in both or in
neither. The contract's number columns never take a boolean; a customer's numeric column
reads one as 1 or 0, from Parquet as from JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def numbers_from_text(values: pd.Series) -> np.ndarray:
    """Each value as a float: NaN where it is missing, not a number, or not finite."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(numbers), numbers, np.nan)


def number_from_text(text: str) -> float:
    """One string read as the loader reads a CSV field (NaN when it is not a finite number).

    The same parser as ``numbers_from_text``, called on a one-element object array: a
    Series of text would cost about 250 µs a value, which a request holding thousands of
    numbers as strings would spend on the event loop; this costs about 12 µs.
    """
    number = float(pd.to_numeric(np.array([text], dtype=object), errors="coerce")[0])
    return number if math.isfinite(number) else math.nan


def custom_number(value: Any) -> float:
    """A JSON value of a numeric custom column (NaN when it is not a finite number).

    A boolean reads as 1 or 0, as a boolean Parquet column does (the contract's own
    number columns refuse booleans; a customer's column keeps its meaning).
    """
    if value is None:
        return math.nan
    if isinstance(value, str):
        return number_from_text(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # an integer past float's range
        return math.nan
    return number if math.isfinite(number) else math.nan
