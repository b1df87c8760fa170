"""`srl validate`, `srl generate`, `srl features` and `srl catalogue` from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.example_columns import EXAMPLE_KEY_COLUMNS, LABEL_COLUMNS
from features.output import OutputPathError
from features.table_files import check_not_an_export_table
from srl.cli import app
from tests.clock import years_ahead
from tests.disk_full import run_on_small_disk, srl_command
from tests.features.conftest import TINY_TABLES, assert_horizon_refused, write_tiny_export

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
    assert (problem["column"], problem["row"]) == ("rejected_at", 3)
    assert problem["found"] == "a word (4 characters)"
    (warning,) = document["warnings"]  # the loader's notes come along, as they may explain
    assert warning.endswith(
        "1 activities with an unknown activity_type were kept as 'other' (1 distinct value; "
        "first at row 4)"
    )


def test_validate_json_summary_counts_censoring(tiny_export_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "--data", str(tiny_export_dir), "--json"])

    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert (document["observed_rejections"], document["censored_rejections"]) == (2, 1)
    assert document["rejections_by_reason"] == {"timing": 2, "budget": 1}


def test_validate_time_span_starts_at_the_earliest_event_of_any_table(tmp_path: Path) -> None:
    # Given a web visit recorded before its lead was created in the CRM
    early = TINY_TABLES["activities"].replace(
        "A1,L1,2024-02-01T00:00:00Z", "A1,L1,2023-11-20T08:30:00Z"
    )
    export = write_tiny_export(tmp_path / "early", {**TINY_TABLES, "activities": early})

    result = runner.invoke(app, ["validate", "--data", str(export), "--json"])

    assert json.loads(result.stdout)["time_span"]["first"] == "2023-11-20T08:30:00+00:00"


@pytest.mark.parametrize(
    ("days", "bound"),
    [
        ("0", "greater than or equal to 1"),
        ("-5", "greater than or equal to 1"),
        ("5000", "less than or equal to 3650"),
    ],
)
def test_validate_refuses_an_out_of_range_horizon_as_a_usage_error(
    tiny_export_dir: Path, days: str, bound: str
) -> None:
    # Given a horizon outside the range the feature config accepts
    # When validate is given it
    result = runner.invoke(
        app, ["validate", "--data", str(tiny_export_dir), "--horizon-days", days]
    )
    # Then the command line is refused, naming the option and the bound
    assert_horizon_refused(result, bound)


def test_validate_help_states_the_horizon_range() -> None:
    # When the help of validate is shown
    result = runner.invoke(app, ["validate", "--help"])
    # Then it states the range the feature config accepts
    assert result.exit_code == 0, result.output
    assert "1 to 3650 days" in re.sub(r"[\s│]+", " ", result.output)


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
    assert {*EXAMPLE_KEY_COLUMNS, *LABEL_COLUMNS} <= set(table.columns)
    assert table["censored"].sum() == 5
    assert not {"email", "first_name", "last_name"} & set(table.columns)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_features_on_a_broken_export_writes_nothing(tmp_path: Path) -> None:
    leads = TINY_TABLES["leads"].replace("webinar", "carrier_pigeon")
    directory = write_tiny_export(tmp_path / "bad", {**TINY_TABLES, "leads": leads})
    out = tmp_path / "out" / "examples.csv"

    result = runner.invoke(app, ["features", "--data", str(directory), "--out", str(out)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a refusal, not a crash
    assert "leads.csv, column 'lead_source', row 1: not one of the allowed values" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert not out.exists()


def test_catalogue_writes_both_documents(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalogue", "--docs", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "`pricing_page_visit_30d`" in (tmp_path / "feature-catalogue.md").read_text()
    assert "| `reason_code` | category | yes |" in (tmp_path / "data-contract.md").read_text()


def test_a_row_dated_in_the_future_is_refused_naming_its_file_column_and_row(
    tmp_path: Path,
) -> None:
    # Given one activity whose year is mistyped, ten years ahead: it would move the snapshot
    activities = TINY_TABLES["activities"] + f"A9,L2,{years_ahead()},web_visit\n"
    directory = write_tiny_export(tmp_path / "future", {**TINY_TABLES, "activities": activities})

    result = runner.invoke(app, ["validate", "--data", str(directory)])

    assert result.exit_code == 1
    assert "activities.csv, column 'occurred_at', row 7: dated in the future" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("given", "moment"),
    [
        ("2025-05-01", "2025-05-01T00:00:00+00:00"),
        ("2025-05-01T06:30", "2025-05-01T06:30:00+00:00"),
        ("2025-05-01T06:30:29.123456Z", "2025-05-01T06:30:29.123456+00:00"),
        ("2025-05-01T08:30:29+02:00", "2025-05-01T06:30:29+00:00"),
    ],
)
def test_moments_on_the_command_line_take_every_form_the_contract_takes(
    tiny_export_dir: Path, given: str, moment: str
) -> None:
    """A summary's ``as_of`` (a fraction of a second, a ``Z``) can be given back as is."""
    result = runner.invoke(
        app, ["validate", "--data", str(tiny_export_dir), "--json", "--snapshot-at", given]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["time_span"]["snapshot"] == moment


def test_a_moment_not_in_the_contracts_form_is_a_usage_error(tiny_export_dir: Path) -> None:
    result = runner.invoke(
        app, ["validate", "--data", str(tiny_export_dir), "--snapshot-at", "01/05/2025"]
    )

    assert result.exit_code == 2
    shown = re.sub(r"[\s│]", "", result.output)
    assert "'01/05/2025'mustbeanISO8601dateortimestampstring" in shown


def test_a_snapshot_in_the_future_is_refused_and_one_in_the_past_keeps_censoring(
    tiny_export_dir: Path,
) -> None:
    ahead = years_ahead()[:10]
    future = runner.invoke(
        app, ["validate", "--data", str(tiny_export_dir), "--snapshot-at", ahead]
    )
    past = runner.invoke(
        app, ["validate", "--data", str(tiny_export_dir), "--json", "--snapshot-at", "2025-05-01"]
    )

    assert future.exit_code == 1
    assert f"snapshot_at: {ahead}T00:00:00+00:00 is in the future" in future.output
    assert json.loads(past.stdout)["censored_rejections"] == 1


def test_a_file_given_as_the_export_directory_is_named_a_file(tiny_export_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "--data", str(tiny_export_dir / "leads.csv")])

    assert result.exit_code == 1
    assert "leads.csv: is a file, not an export directory" in result.output


def test_validate_json_describes_a_shifted_cell_and_never_shows_it(tmp_path: Path) -> None:
    # Given a leads row missing a field, so that its e-mail address lands in product_fit
    leads = TINY_TABLES["leads"].replace("retail,,Engineer", "retail,Engineer")
    directory = write_tiny_export(tmp_path / "bad", {**TINY_TABLES, "leads": leads})

    as_json = runner.invoke(app, ["validate", "--data", str(directory), "--json"])
    as_text = runner.invoke(app, ["validate", "--data", str(directory)])

    assert (as_json.exit_code, as_text.exit_code) == (1, 1)
    problems = {p["column"]: p for p in json.loads(as_json.stdout)["problems"]}
    assert problems["product_fit"]["found"].startswith("an e-mail address (15 characters)")
    assert "value" not in problems["product_fit"]
    for output in (as_json.output, as_text.output):
        assert "bob@example.com" not in output
    assert "the cell holds an e-mail address (15 characters)" in as_text.output


def _output_in_the_way(tmp_path: Path, case: str) -> Path:
    """An output path that cannot be written: ``case`` says what is in the way."""
    if case == "wrong extension":
        return tmp_path / "examples.txt"
    if case == "a directory":
        (tmp_path / "examples.parquet").mkdir()
        return tmp_path / "examples.parquet"
    (tmp_path / "a-file").write_bytes(b"")
    return tmp_path / "a-file" / "examples.parquet"


def _unboxed(output: str) -> str:
    """The command's output without the error box's borders and line breaks."""
    return re.sub(r"[\s│]", "", output)


@pytest.mark.parametrize("case", ["wrong extension", "a directory", "a parent that is a file"])
def test_features_refuses_an_output_it_cannot_write_before_any_work(
    tmp_path: Path, case: str
) -> None:
    # Given an output path with something in the way (and no export at all: paths come first)
    out = _output_in_the_way(tmp_path, case)

    result = runner.invoke(app, ["features", "--data", str(tmp_path / "none"), "--out", str(out)])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert str(out).replace(" ", "") in _unboxed(result.output)


@pytest.mark.parametrize(
    ("command", "table_file"),
    [
        ("features", "rejections.csv"),
        ("evaluate", "leads.csv"),
        ("features", "Rejections.parquet"),  # the loader refuses a second copy in any case
        ("score", "consent.parquet"),  # absent from the export: it would be read next time
    ],
)
def test_commands_refuse_an_output_that_is_a_table_of_their_export(
    tiny_export_dir: Path, command: str, table_file: str
) -> None:
    # Given an output path naming a table file of the export read, through another path
    before = {f.name: f.read_bytes() for f in tiny_export_dir.iterdir()}
    out = tiny_export_dir / ".." / tiny_export_dir.name / table_file

    result = runner.invoke(app, [command, "--data", str(tiny_export_dir), "--out", str(out)])

    # Then the command line is refused before any work, and the export is as it was (the
    # batch job leaves its failed summary beside --out, as for any path it refuses)
    assert result.exit_code == 2, result.output
    assert f"isthe{table_file.split('.')[0].lower()}tableoftheexport" in _unboxed(result.output)
    after = {f.name: f.read_bytes() for f in tiny_export_dir.iterdir()}
    summary = after.pop(f"{table_file}.summary.json", None)
    assert after == before
    assert (summary is None) == (command != "score")


def test_an_export_named_by_a_file_uri_is_protected_as_its_folder(tiny_export_dir: Path) -> None:
    # Spark's --data takes URIs: a file: URI names the same folder, an s3a: one no local one
    out = tiny_export_dir / "leads.csv"
    for data in (tiny_export_dir.as_uri(), f"file:{tiny_export_dir}"):
        with pytest.raises(OutputPathError, match="is the leads table of the export"):
            check_not_an_export_table(out, data)
    assert check_not_an_export_table(out, "s3a://bucket/exports/2026-06-30") == out


@pytest.mark.parametrize(
    ("command", "case"), [("generate", "a file"), ("catalogue", "a parent that is a file")]
)
def test_commands_writing_folders_refuse_a_file_in_the_way(
    tmp_path: Path, command: str, case: str
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    folder = tmp_path / "a-file" if case == "a file" else tmp_path / "a-file" / "docs"
    option = "--out" if command == "generate" else "--docs"

    result = runner.invoke(app, [command, option, str(folder)])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "a-file" in _unboxed(result.output)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("version: [\n", "not valid YAML"),
        ("horizon_days: 90\nhorizon_days: 180\n", "key 'horizon_days' appears twice (line 2"),
        ("snapshot_at: 2024-02-30\n", "not valid YAML: a value YAML cannot read"),
        ("horizon_days: yes\n", "horizon_days: Value error, should be a number, not true/false"),
        ("- horizon_days\n", "holds a list, not a mapping"),
        (None, "could not be read: No such file or directory"),
        (
            "# a wrong path\n" * 80_000,
            "could not be read: larger than 1 MiB, too large for a settings file",
        ),
        (
            "custom_columns:\n  categorical: [consent_status]\n",
            "invalid feature settings: custom_columns.categorical: 'consent_status' is a "
            "feature the engine already computes",
        ),
        (
            "features:\n  custom_columns:\n    numeric: [label]\n",
            "invalid feature settings: custom_columns.numeric: 'label' is a label column of "
            "the example table",
        ),
    ],
)
def test_features_names_a_config_file_it_cannot_use(
    tiny_export_dir: Path, tmp_path: Path, text: str | None, reason: str
) -> None:
    config = tmp_path / "settings.yaml"
    if text is not None:
        config.write_text(text, encoding="utf-8")
    out = tmp_path / "examples.parquet"
    arguments = ["--data", str(tiny_export_dir), "--out", str(out), "--config", str(config)]

    result = runner.invoke(app, ["features", *arguments])

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"{config}: " in result.output
    assert reason in result.output
    assert not out.exists()


def test_features_on_a_full_disk_names_the_file_and_keeps_the_previous_one(
    tiny_export_dir: Path, tmp_path: Path
) -> None:
    # Given a previous example table, and a disk where no file can grow past 4 kB
    out = tmp_path / "out" / "examples.parquet"
    out.parent.mkdir()
    out.write_bytes(b"the previous table")
    command = srl_command("features", "--data", str(tiny_export_dir), "--out", str(out))

    result = run_on_small_disk(command, max_file_bytes=4096)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: could not write {out}: File too large" in result.stderr
    assert out.read_bytes() == b"the previous table"
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_generate_refuses_an_empty_out_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unset variable (`--out "$EXPORT_DIR"`) must not mean the current directory
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["generate", "--out", "", "--leads", "10"])

    assert result.exit_code == 2, result.output
    assert "isempty" in _unboxed(result.output)
    assert list(tmp_path.iterdir()) == []


def test_generate_replaces_an_export_only_when_told_to(tmp_path: Path) -> None:
    # Given an export already in the directory (a real CRM export, as far as srl knows)
    out = tmp_path / "export"
    first = runner.invoke(app, ["generate", "--out", str(out), "--leads", "10", "--format", "csv"])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # When it is generated into again without --overwrite, it is refused and left as it was
    refused = runner.invoke(app, ["generate", "--out", str(out), "--leads", "10", "--seed", "8"])
    assert refused.exit_code == 2, refused.output
    assert "alreadyholdsanexport" in _unboxed(refused.output)
    assert "--overwrite" in _unboxed(refused.output)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # And with --overwrite its table files are replaced (the other format's removed)
    replaced = runner.invoke(
        app, ["generate", "--out", str(out), "--leads", "10", "--seed", "8", "--overwrite"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in TINY_TABLES)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--seed", "-1"),
        ("--leads", "5000001"),
        ("--format", "xlsx"),
        ("--years", "0.5"),
        ("--years", "11"),
    ],
)
def test_generate_refuses_values_out_of_range_as_usage_errors(
    tmp_path: Path, option: str, value: str
) -> None:
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), option, value])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x").exists()


def test_generate_writes_the_years_of_history_asked_for(tmp_path: Path) -> None:
    # Given exports of the same leads over four and seven years
    spans = {}
    for years in (4, 7):
        out = tmp_path / f"years-{years}"
        result = runner.invoke(
            app, ["generate", "--out", str(out), "--leads", "300", "--years", str(years)]
        )
        assert result.exit_code == 0, result.output
        created = pd.read_parquet(out / "leads.parquet")["created_at"]
        spans[years] = (created.max() - created.min()).days / 365.25

    # Then the leads are created over the years asked for
    assert 3.5 < spans[4] <= 4
    assert 6.5 < spans[7] <= 7


def test_generate_lists_the_formats_in_its_help() -> None:
    result = runner.invoke(app, ["generate", "--help"])

    assert "parquet|csv" in _unboxed(result.output)


def test_generate_refuses_a_broken_symbolic_link_before_any_work(tmp_path: Path) -> None:
    link = tmp_path / "export"
    link.symlink_to(tmp_path / "gone")

    result = runner.invoke(app, ["generate", "--out", str(link), "--leads", "10"])

    assert result.exit_code == 2, result.output
    assert "symboliclink" in _unboxed(result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_generate_on_a_full_disk_names_the_file_and_leaves_the_export_as_it_was(
    tmp_path: Path,
) -> None:
    # Given an export, regenerated larger on a disk that fills up
    out = tmp_path / "export"
    first = runner.invoke(app, ["generate", "--out", str(out), "--leads", "10"])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    command = srl_command("generate", "--out", str(out), "--leads", "3000", "--overwrite")

    result = run_on_small_disk(command, max_file_bytes=64 * 1024)

    # Then the error names the table file at its final path, and nothing else changed
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(rf"error: could not write {re.escape(str(out))}/\w+\.parquet: ", result.stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
