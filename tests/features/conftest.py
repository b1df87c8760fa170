"""Fixtures for the features tests: a tiny hand-written export whose numbers are known."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import Result

TINY_TABLES: dict[str, str] = {
    "leads": """lead_id,created_at,lead_source,industry,employee_count,job_title,job_level,product_fit,email,first_name,crm_custom_score
L1,2024-01-01T00:00:00Z,webinar,Software,120,VP Sales,,ideal,ann@example.com,Ann,3
L2,2024-02-01T00:00:00+02:00,Web_Form,retail,,Engineer,individual_contributor,,bob@example.com,Bob,
""",
    "activities": """activity_id,lead_id,occurred_at,activity_type
A1,L1,2024-02-01T00:00:00Z,pricing_page_visit
A2,L1,2024-03-01T00:00:00Z,email_open
A3,L1,2024-06-15T00:00:00Z,pricing_page_visit
A4,L2,2024-03-01T00:00:00Z,carrier_pigeon
A5,L1,2024-04-01T00:00:00Z,onsite_demo
A6,L1,2024-03-02T00:00:00Z,funding_confirmed
""",
    "rejections": """rejection_id,lead_id,rejected_at,stage_at_rejection,reason_code,follow_up_date,lead_score_at_rejection,recommended_program
R1,L1,2024-04-01T00:00:00Z,sql,budget,2024-09-01,40,Budget Track
R2,L2,2024-04-01T00:00:00Z,mql,timing,,,
R3,L1,2025-05-01T00:00:00Z,sql,timing,,,
""",
    "opportunities": """opportunity_id,lead_id,created_at,closed_at,status,amount
O1,L1,2024-08-01T00:00:00Z,2024-10-01T00:00:00Z,lost,5000
""",
    "consent": """lead_id,changed_at,status
L2,2024-05-01T00:00:00Z,unsubscribed
""",
}


def write_tiny_export(directory: Path, tables: dict[str, str] | None = None) -> Path:
    """Write the tiny CSV export (optionally with some tables replaced) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (tables or TINY_TABLES).items():
        (directory / f"{name}.csv").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def tiny_export_dir(tmp_path: Path) -> Path:
    """The tiny export as CSV files in a fresh directory."""
    return write_tiny_export(tmp_path / "tiny")


def assert_option_refused(result: Result, option: str, bound: str) -> None:
    """The command line was refused (exit 2) naming ``option`` and the bound, no dump."""
    message = re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in message
    assert bound in message
    assert "pydantic.dev" not in message


def assert_horizon_refused(result: Result, bound: str) -> None:
    """The command line was refused (exit 2) naming --horizon-days and the bound, no dump."""
    assert_option_refused(result, "--horizon-days", bound)
