"""`srl validate`, `srl generate`, `srl features` and `srl catalogue` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from srl.cli import app
from tests.features.conftest import TINY_TABLES, write_tiny_export

runner = CliRunner()


def test_validate_summarises_a_valid_export(tiny_export_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "--data", str(tiny_export_dir)])

    assert result.exit_code == 0, result.output
    assert "rows: leads 2, activities 6, rejections 3, opportunities 1, consent 1" in result.output
    assert "365-day outcome: 2 observed, 1 censored" in result.output
    assert "re-conversion rate among observed: 50.0%" in result.output


def test_validate_json_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    rejections = TINY_TABLES["rejections"].replace("2025-05-01T00:00:00Z", "soon")
    directory = write_tiny_export(tmp_path / "bad", {**TINY_TABLES, "rejections": rejections})

    result = runner.invoke(app, ["validate", "--data", str(directory), "--json"])

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    (problem,) = document["problems"]
    assert (problem["column"], problem["row"], problem["value"]) == ("rejected_at", 3, "soon")


def test_validate_json_summary_counts_censoring(tiny_export_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "--data", str(tiny_export_dir), "--json"])

    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert (document["observed_rejections"], document["censored_rejections"]) == (2, 1)
    assert document["rejections_by_reason"] == {"timing": 2, "budget": 1}


def test_generate_then_validate_both_formats(tmp_path: Path) -> None:
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt
        generated = runner.invoke(
            app, ["generate", "--out", str(out), "--leads", "300", "--seed", "2", "--format", fmt]
        )
        assert generated.exit_code == 0, generated.output
        assert sorted(p.name for p in out.iterdir()) == sorted(
            f"{t}.{fmt}" for t in ("leads", "activities", "rejections", "opportunities", "consent")
        )
        validated = runner.invoke(app, ["validate", "--data", str(out)])
        assert validated.exit_code == 0, validated.output


def test_generate_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--out", str(tmp_path), "--format", "xlsx"])

    assert result.exit_code == 2


def test_features_writes_the_example_table(tiny_export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "examples.parquet"

    result = runner.invoke(app, ["features", "--data", str(tiny_export_dir), "--out", str(out)])

    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert len(table) == 9
    assert {"rejection_id", "as_of", "label", "censored", "reason_code"} <= set(table.columns)
    assert table["censored"].sum() == 5
    assert not {"email", "first_name", "last_name"} & set(table.columns)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_features_on_a_broken_export_writes_nothing(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("webinar", "carrier_pigeon")
    directory = write_tiny_export(tmp_path / "bad", {**TINY_TABLES, "leads": leads})
    out = tmp_path / "out" / "examples.csv"

    result = runner.invoke(app, ["features", "--data", str(directory), "--out", str(out)])

    assert result.exit_code == 1
    assert not out.exists()


def test_catalogue_writes_both_documents(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalogue", "--docs", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "`pricing_page_visit_30d`" in (tmp_path / "feature-catalogue.md").read_text()
    assert "| `reason_code` | category | yes |" in (tmp_path / "data-contract.md").read_text()


def test_a_future_timestamp_warns_and_an_explicit_snapshot_restores_censoring(
    tmp_path: Path,
) -> None:
    activities = TINY_TABLES["activities"] + "A9,L2,2036-01-01T00:00:00Z,web_visit\n"
    directory = write_tiny_export(tmp_path / "future", {**TINY_TABLES, "activities": activities})

    default = runner.invoke(app, ["validate", "--data", str(directory), "--json"])
    explicit = runner.invoke(
        app, ["validate", "--data", str(directory), "--json", "--snapshot-at", "2025-05-01"]
    )

    assert json.loads(default.stdout)["censored_rejections"] == 0
    assert any("dated after now" in w for w in json.loads(default.stdout)["warnings"])
    assert json.loads(explicit.stdout)["censored_rejections"] == 1
