"""E-mail addresses in values: recognised in linear time, never a feature."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import holds_email_address, is_email_address
from features.loading import load_export
from features.normalise import job_level_from_title, normalise_value
from tests.features.conftest import TINY_TABLES, write_tiny_export

#: The textbook pattern, as a reference on short strings (it backtracks quadratically on
#: long ones, which is why the project does not use it).
REFERENCE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="ab.@ \t-é", max_size=16))
def test_recognition_agrees_with_the_textbook_pattern(text: str) -> None:
    assert is_email_address(text) == (REFERENCE.fullmatch(text.strip()) is not None)
    assert holds_email_address(text) == (REFERENCE.search(text) is not None)


@pytest.mark.parametrize(
    "value",
    ["ann@example.com", " Ann.Lee@Example.co.uk ", "Ann Smith <ann@example.com>", "a@b.c, d@e.f"],
)
def test_text_holding_an_email_address_normalises_to_missing(value: str) -> None:
    assert normalise_value(value) is None


@pytest.mark.parametrize(
    ("value", "normalised"),
    [("Software & IT", "software it"), ("@home office", "@home office"), ("Q1@2025", "q1@2025")],
)
def test_text_without_an_address_keeps_its_normal_form(value: str, normalised: str) -> None:
    assert normalise_value(value) == normalised


def test_a_job_title_that_is_an_address_derives_no_level() -> None:
    assert job_level_from_title("ann@example.com") == job_level_from_title(None)


def test_a_shifted_row_never_shows_the_personal_value_that_landed_in_its_key(
    tmp_path: Path,
) -> None:
    # Given a leads file with the e-mail column next to the key, and a row whose lead_id
    # field is missing: every value moves one column over, the address into lead_id
    leads = (
        "lead_id,email,first_name,created_at,lead_source,industry\n"
        "L1,ann@example.com,Ann,2024-01-01T00:00:00Z,webinar,Software\n"
        "mary.major@example.com,Mary,2024-02-01T00:00:00Z,webinar,retail\n"
        "Bob,L3,2024-02-01T00:00:00Z,webinar,retail,\n"
    )
    export = write_tiny_export(tmp_path / "shifted", {**TINY_TABLES, "leads": leads})
    # When it is loaded leniently, as the batch job reads it
    rejected = load_export(export, lenient=True).rejected_rows
    # Then the shifted rows are set aside without their keys
    leads_rows = {r.row: r for r in rejected if r.table == "leads"}
    assert set(leads_rows) == {2, 3}
    assert all(r.key is None for r in leads_rows.values())
    assert not [r for r in rejected if r.key is not None and "@" in r.key]
