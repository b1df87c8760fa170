"""E-mail addresses in values: recognised in linear time, never a feature."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import holds_email_address, is_email_address
from features.normalise import job_level_from_title, normalise_value

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
