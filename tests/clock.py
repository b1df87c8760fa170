"""Moments relative to the machine's clock, so that no test expires on a calendar date."""

from __future__ import annotations

import pandas as pd


def years_ahead(years: int = 10) -> str:
    """Midnight UTC about ``years`` years after today, in the contract's ISO form."""
    moment = pd.Timestamp.now(tz="UTC").normalize() + pd.DateOffset(years=years)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
