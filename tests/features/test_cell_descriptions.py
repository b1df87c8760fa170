"""How a bad cell is described: its kind, never its content, and a shift hint only when telling."""

from __future__ import annotations

import pytest

from features.cell_descriptions import SHIFT_HINT, describe_cell
from features.contract import TABLES_BY_NAME

LEADS = TABLES_BY_NAME["leads"]


def described(column: str, value: str) -> str | None:
    return describe_cell(value, LEADS.column(column), LEADS)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("12,5", "a number written with a decimal comma"),
        ("1,234,567", "a number written with thousands separators"),
        ("1.234,5", "a number written with thousands separators"),
        ("12,5k", "a number followed by a unit or suffix"),
    ],
)
def test_numbers_written_otherwise_are_described_as_such(value: str, kind: str) -> None:
    assert described("annual_revenue", value) == f"{kind} ({len(value)} characters)"


@pytest.mark.parametrize(
    ("column", "value"),
    [("annual_revenue", "unknown"), ("employee_count", "other"), ("annual_revenue", "n/a")],
)
def test_a_word_in_a_number_column_is_a_placeholder_not_a_shift(column: str, value: str) -> None:
    found = described(column, value)

    assert found is not None
    assert found.startswith("a word")
    assert SHIFT_HINT not in found


def test_a_value_of_another_category_column_in_a_category_column_hints_a_shift() -> None:
    assert described("product_fit", "unknown") == (
        f"a value allowed in column 'job_level' (7 characters): {SHIFT_HINT}"
    )


def test_an_email_address_outside_email_still_hints_a_shift() -> None:
    assert SHIFT_HINT in (described("annual_revenue", "jane.doe@acme.com") or "")


@pytest.mark.parametrize(
    "value", ["31/12/2025", "12/31/2025 10:00", "31.12.2025", "31-12-25", "2025/12/31 10:00:00"]
)
def test_dates_not_in_iso_form_are_recognised(value: str) -> None:
    assert described("created_at", value) == (
        f"a date not in ISO 8601 form (YYYY-MM-DD) ({len(value)} characters)"
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2025-12-31T10:00:00+02", "a timestamp whose offset has hours but no minutes"),
        ("2025-12-31T10:00:00,5Z", "a timestamp with a decimal comma in its seconds"),
        ("2025-12-31t10:00:00z", "a timestamp with a lower-case t or z"),
        ("2025-12-31 10:00:00Z", "a timestamp with a space between date and time"),
        (
            "2025-12-31T10:00:00.1234567891Z",
            "a timestamp with more than 9 digits after the seconds",
        ),
        ("2025-02-30", "a date or time that does not exist, such as February 30 or hour 24"),
        ("2025-12-31T24:00", "a date or time that does not exist, such as February 30 or hour 24"),
    ],
)
def test_a_near_miss_of_the_timestamp_form_says_what_is_wrong(value: str, kind: str) -> None:
    assert described("created_at", value) == f"{kind} ({len(value)} characters)"


def test_a_near_miss_outside_a_date_column_is_only_shaped_like_a_date() -> None:
    assert described("industry", "2025-12-31T10:00:00+02") == (
        f"text shaped like a date (22 characters): {SHIFT_HINT}"
    )
