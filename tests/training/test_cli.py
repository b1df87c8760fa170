"""The training commands through the ``srl`` application, on the small export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from srl.cli import app
from tests.disk_full import run_on_small_disk, srl_command
from tests.features.conftest import assert_horizon_refused, assert_option_refused
from tests.servers import free_port

pytestmark = pytest.mark.slow

runner = CliRunner()


def test_train_tune_models_promote_evaluate_rollback(
    small_export_dir: Path, tracking_uri: str, tmp_path: Path
) -> None:
    trained = runner.invoke(app, ["train", "--data", str(small_export_dir), "--tune", "2"])
    assert trained.exit_code == 0, trained.output
    assert "registered srl-reconversion version 1" in trained.stdout
    assert "gate: champion: no champion yet" in trained.stdout
    assert "Scoring the top 20% of rejected leads finds" in trained.stdout
    assert "note: validation labels look up to 36" in trained.stdout  # 364.x days by default
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("srl-reconversion").experiment_id]  # type: ignore[union-attr]
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert len(trials) == 2
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    assert all("validation.log_loss" in t.data.metrics for t in trials)

    # A 180-day model of this small export need not beat the baselines: the gate is asked
    # about the champion here
    lenient = tmp_path / "training.yaml"
    lenient.write_text("promotion:\n  beat_baselines: false\n", encoding="utf-8")
    again = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(small_export_dir),
            "--horizon-days",
            "180",
            "--config",
            str(lenient),
        ],
    )
    assert again.exit_code == 0, again.output
    assert "gate: not promoted" in again.stdout
    assert "predicts reconverted within 365 days" in again.stdout

    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["aliases"], r["predicts"]) for r in rows] == [
        ("2", ["challenger"], "reconverted within 180 days"),
        ("1", ["champion"], "reconverted within 365 days"),
    ]
    table = runner.invoke(app, ["models"])
    assert "champion" in table.stdout
    assert "reconverted within 180 days" in table.stdout

    no_such = runner.invoke(app, ["promote", "7"])
    assert no_such.exit_code == 1
    assert isinstance(no_such.exception, SystemExit)
    assert "srl-reconversion has no version 7" in no_such.output
    assert str(client.get_model_version_by_alias("srl-reconversion", "champion").version) == "1"

    promoted = runner.invoke(app, ["promote", "2", "--reason", "shorter horizon wanted"])
    assert promoted.exit_code == 0, promoted.output
    assert "champion is now version 2 (was 1)" in promoted.stdout

    out = tmp_path / "predictions.csv"
    evaluated = runner.invoke(app, ["evaluate", "--data", str(small_export_dir), "--out", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    document = json.loads(evaluated.stdout)
    assert document["model"]["version"] == "2"
    assert len(pd.read_csv(out)) == document["examples"]

    rolled = runner.invoke(app, ["rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert "champion is now version 1 (was 2)" in rolled.stdout
    nothing_left = runner.invoke(app, ["rollback"])
    assert nothing_left.exit_code == 1
    assert isinstance(nothing_left.exception, SystemExit)
    assert "srl-reconversion version 1 replaced no earlier champion" in nothing_left.output


def test_clear_errors_for_bad_input(tracking_uri: str, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert "export directory does not exist" in missing.output

    bad_target = runner.invoke(app, ["train", "--data", str(tmp_path), "--target", "sold"])
    assert bad_target.exit_code == 2

    no_model = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.csv"),
            "--model",
            "models:/srl-reconversion@champion",
        ],
    )
    assert no_model.exit_code == 1
    assert "no model registry" in no_model.output

    promote = runner.invoke(app, ["promote", "7"])
    assert promote.exit_code == 1
    assert "no model registry" in promote.output


def test_an_explicit_snapshot_sets_the_censoring_of_the_run(
    small_export_dir: Path, tracking_uri: str
) -> None:
    # Given an export whose latest timestamp is in mid-2026
    # When a model is trained as if the export had ended on 2026-03-31
    trained = runner.invoke(
        app,
        ["train", "--data", str(small_export_dir), "--no-register", "--snapshot-at", "2026-03-31"],
    )
    # Then the run records that snapshot and censors against it
    assert trained.exit_code == 0, trained.output
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("srl-reconversion")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    fingerprint = client.download_artifacts(run.info.run_id, "data_fingerprint.json")
    document = json.loads(Path(fingerprint).read_text())
    assert document["snapshot_at"] == "2026-03-31T00:00:00+00:00"
    assert document["export_warnings"] == []  # a chosen snapshot needs no note on later closes


@pytest.mark.parametrize("case", ["wrong extension", "a directory", "a parent that is a file"])
def test_evaluate_refuses_an_output_it_cannot_write_before_any_work(
    tmp_path: Path, case: str
) -> None:
    # Given an output path with something in the way (no export, no model: paths come first)
    if case == "wrong extension":
        out = tmp_path / "predictions.txt"
    elif case == "a directory":
        out = tmp_path / "predictions.parquet"
        out.mkdir()
    else:
        (tmp_path / "a-file").write_bytes(b"")
        out = tmp_path / "a-file" / "predictions.parquet"
    arguments = ["--data", str(tmp_path / "none"), "--model", str(tmp_path / "no-model")]

    result = runner.invoke(app, ["evaluate", *arguments, "--out", str(out)])

    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert str(out).replace(" ", "") in re.sub(r"[\s│]", "", result.output)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("version: [\n", "not valid YAML"),
        ("just some words\n", "holds a single value, not a mapping"),
        (None, "could not be read: No such file or directory"),
        ("version: 1\nfeatures:\n  horizon_days: -3\n", "invalid training settings"),
        (
            "version: 1\nfeatures:\n  custom_columns:\n    numeric: [points_score]\n",
            "invalid training settings: features.custom_columns.numeric: 'points_score' is a "
            "feature the engine already computes",
        ),
    ],
)
def test_train_names_a_config_file_it_cannot_use(
    tracking_uri: str, tmp_path: Path, text: str | None, reason: str
) -> None:
    config = tmp_path / "training.yaml"
    if text is not None:
        config.write_text(text, encoding="utf-8")

    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--config", str(config)])

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"{config}: " in result.output
    assert reason in result.output


def test_train_names_an_unreachable_tracking_server_without_its_password(
    small_export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tracking server URI with credentials where nothing listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # When train reaches the store
    result = runner.invoke(app, ["train", "--data", str(small_export_dir)])
    # Then it is an error naming the store, credentials masked, not a traceback
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Connection refused" in result.output
    assert "(tracking store http://***@127.0.0.1:" in result.output
    assert "s3cret" not in result.output


def test_train_names_an_artifact_folder_it_cannot_make(
    small_export_dir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an artifact root under a file
    root = small_export_dir / "leads.parquet" / "artifacts"
    monkeypatch.setenv("SRL_ARTIFACT_ROOT", str(root))
    # When train creates its experiment there
    result = runner.invoke(app, ["train", "--data", str(small_export_dir)])
    # Then it is an error naming the folder, not a traceback
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "error: NotADirectoryError: " in result.output
    assert f"Not a directory: '{root}'" in result.output


def test_train_on_a_full_disk_is_an_error_naming_the_store(
    small_export_dir: Path, tracking_uri: str
) -> None:
    # Given a disk where no file can grow past 200 kB (the store's tables need more)
    command = srl_command("train", "--data", str(small_export_dir))
    # When train creates its store there
    result = run_on_small_disk(command, max_file_bytes=200_000)
    # Then it says so on one line naming the store
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: (sqlite3.OperationalError) disk I/O error" in result.stderr
    assert f"(tracking store {tracking_uri})" in result.stderr


@pytest.mark.parametrize(
    "command",
    [["models"], ["models", "--json"], ["promote", "1"], ["rollback"], ["evaluate"]],
)
def test_registry_commands_refuse_a_missing_registry_and_create_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # Given a fresh folder and no tracking store configured (the embedded store is the default)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    if command == ["evaluate"]:
        command = ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "p.csv")]
    # When a command reads or moves the registry
    result = runner.invoke(app, command)
    # Then it refuses as evaluate does, and leaves no empty store behind
    assert result.exit_code == 1, result.output
    assert "no model registry at" in result.output
    assert "train a model first or set MLFLOW_TRACKING_URI" in result.output
    assert not (tmp_path / ".srl").exists()


@pytest.mark.parametrize(
    ("days", "bound"),
    [("0", "greater than or equal to 1"), ("5000", "less than or equal to 3650")],
)
def test_train_refuses_an_out_of_range_horizon_as_a_usage_error(
    tmp_path: Path, days: str, bound: str
) -> None:
    # Given a horizon outside the range the feature config accepts
    # When train is given it
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--horizon-days", days])
    # Then the command line is refused before any work, naming the option and the bound
    assert_horizon_refused(result, bound)
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "1 to 3650 days" in re.sub(r"[\s│]+", " ", help_text)


@pytest.mark.parametrize(
    ("seed", "bound"),
    [("-1", "greater than or equal to 0"), ("4294967296", "less than or equal to 4294967295")],
)
def test_train_refuses_a_seed_the_samplers_refuse_as_a_usage_error(
    tmp_path: Path, seed: str, bound: str
) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--seed", seed, "--tune", "1"])

    assert_option_refused(result, "--seed", bound)
    assert not (tmp_path / ".srl").exists()


def test_train_refuses_more_tuning_trials_than_it_allows_as_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--tune", "1001"])

    assert_option_refused(result, "--tune", "less than or equal to 1000")
    assert not (tmp_path / ".srl").exists()


@pytest.mark.parametrize("command", [["models"], ["promote", "2"], ["rollback"]])
def test_registry_commands_refuse_a_name_no_model_can_have(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--name", "o'brien"])

    assert result.exit_code == 2
    assert "Invalid value for '--name'" in result.output
