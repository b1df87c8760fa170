"""Normalisation of free-text CRM fields, shared by every path that reads them."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from features.contract import JOB_LEVELS, holds_email_address

_SPACES = re.compile(r"[\s_\-/&,.]+")
UNKNOWN_LEVEL = JOB_LEVELS.index("unknown")
#: Arrays up to this length are handled value by value (cheaper than factorising).
SMALL = 8

#: Title keywords in priority order: the first level whose pattern matches wins.
TITLE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("student", re.compile(r"\b(student|intern|trainee|apprentice)\b")),
    ("c_level", re.compile(r"\b(c[a-z]o|chief|president|founder|owner|partner)\b")),
    ("vp", re.compile(r"\b(vp|svp|evp|vice president|head of|head)\b")),
    ("director", re.compile(r"\b(director|dir)\b")),
    ("manager", re.compile(r"\b(manager|mgr|lead|supervisor)\b")),
)


@lru_cache(maxsize=65536)
def _normalise_string(text: str) -> str | None:
    if holds_email_address(text):
        return None
    return _SPACES.sub(" ", text.lower()).strip() or None


def normalise_value(value: object) -> str | None:
    """Lower-case, trimmed text with runs of spaces and punctuation folded to one space.

    Text holding an e-mail address is missing: personal data is never a feature, and a text
    feature's frequent values go into the model's vocabulary (a custom column of account
    owners' addresses, ``Ann <ann@example.com>``, a shifted row putting a lead's address in
    ``industry``).
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return _normalise_string(str(value))


def normalise_text(values: np.ndarray) -> np.ndarray:
    """``normalise_value`` over an object array, computed once per distinct value."""
    if len(values) <= SMALL:
        return np.array([normalise_value(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    normalised = np.array([normalise_value(u) for u in uniques] + [None], dtype=object)
    return normalised[codes]


@lru_cache(maxsize=4096)
def job_level_from_title(title: str | None) -> int:
    """The contract job-level code a title implies (``unknown`` when nothing matches)."""
    text = normalise_value(title)
    if text is None:
        return UNKNOWN_LEVEL
    for level, pattern in TITLE_PATTERNS:
        if pattern.search(text):
            return JOB_LEVELS.index(level)
    return JOB_LEVELS.index("individual_contributor")


def derive_job_levels(codes: np.ndarray, titles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Job-level codes with missing or ``unknown`` levels derived from the title.

    Returns:
        The completed codes and a boolean array marking the derived ones.
    """
    missing = (codes < 0) | (codes == UNKNOWN_LEVEL)
    derived = codes.copy()
    if missing.any() and len(codes) <= SMALL:
        derived[missing] = [job_level_from_title(t) for t in titles[missing]]
    elif missing.any():
        title_codes, uniques = pd.factorize(titles[missing], use_na_sentinel=True)
        levels = np.array([job_level_from_title(t) for t in uniques] + [UNKNOWN_LEVEL])
        derived[missing] = levels[title_codes]
    return derived, missing & (derived != UNKNOWN_LEVEL)
