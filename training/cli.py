"""``srl train``, ``srl evaluate``, ``srl models``, ``srl promote`` and ``srl rollback``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError

from features.cli import (
    SnapshotOption,
    checked_output,
    horizon_days_option,
    write_failed,
)
from features.config import ConfigError, setting_problems
from features.error_text import error_summary
from features.model_store import DEFAULT_MODEL_URI, ModelLoadError
from features.problems import ContractError
from features.timestamps import as_utc
from training.config import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_MODEL_NAME,
    MAX_SEED,
    MODEL_NAME_PATTERN,
    MODEL_NAME_RULE,
    TrainingConfig,
    load_training_config,
    with_horizon_days,
)
from training.split import SplitError

#: The most Optuna trials ``--tune`` asks for: each trains a booster, so a mistyped count
#: (``--tune 1000000``) would run for days.
MAX_TUNE_TRIALS = 1000

DataOption = Annotated[
    Path, typer.Option("--data", help="Export directory: leads, activities, rejections, ...")
]


def _model_name(name: str) -> str:
    """``--name``, refused (exit 2) unless it has the form of ``MODEL_NAME_PATTERN``."""
    if re.fullmatch(MODEL_NAME_PATTERN, name) is None:
        raise typer.BadParameter(f"a registered model's name has {MODEL_NAME_RULE}")
    return name


NameOption = Annotated[
    str,
    typer.Option(
        "--name", callback=_model_name, help="Registered model name in the MLflow registry."
    ),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why, in a few words (recorded on the version).")
]


def train(
    data: DataOption,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Training YAML (default: config/training.yaml)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Override the label: reconverted or won."),
    ] = None,
    horizon_days: Annotated[int | None, horizon_days_option("Override the label horizon")] = None,
    tune_trials: Annotated[
        int,
        typer.Option(
            "--tune",
            min=0,
            max=MAX_TUNE_TRIALS,
            help=f"Optuna trials on the validation window first (0: none; at most "
            f"{MAX_TUNE_TRIALS:,}).",
        ),
    ] = 0,
    seed: Annotated[
        int | None,
        typer.Option("--seed", min=0, max=MAX_SEED, help=f"Override the seed, 0 to {MAX_SEED}."),
    ] = None,
    register: Annotated[
        bool,
        typer.Option("--register/--no-register", help="Register the model and apply the gate."),
    ] = True,
    snapshot_at: SnapshotOption = None,
) -> None:
    """Train, evaluate and register a re-conversion model; log everything to MLflow."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from training.registry import RegistryError
    from training.tracking import store_failure
    from training.train import train as run_training

    if target is not None and target not in ("reconverted", "won"):
        raise typer.BadParameter("must be reconverted or won", param_hint="--target")
    try:
        settings = with_horizon_days(
            _settings(config).with_overrides(**{"features.target": target, "seed": seed}),
            horizon_days,
        )
        result = run_training(data, settings, tune_trials, register, as_utc(snapshot_at))
    except (
        ConfigError,
        ContractError,
        SplitError,
        ValidationError,
        FileNotFoundError,
        RegistryError,
    ) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    except (MlflowException, SQLAlchemyError) as error:  # the store unreachable or failing
        typer.echo(f"error: {store_failure(error)}", err=True)
        raise typer.Exit(1) from error
    except OSError as error:  # a full disk, an artifact folder that cannot be made
        typer.echo(f"error: {error_summary(error, with_kind=True)}", err=True)
        raise typer.Exit(1) from error
    overall = result.evaluation.report["overall"]
    typer.echo(f"run {result.run_id}: {result.model_uri}")
    if result.version is not None:
        typer.echo(
            f"registered {settings.registered_model_name} version {result.version} "
            "(alias challenger)"
        )
    typer.echo(_metric_line("lightgbm", overall))
    for name, report in result.evaluation.baselines.items():
        typer.echo(_metric_line(name, report["overall"]))
    typer.echo(result.evaluation.summary)
    overlap = result.split["validation_labels_past_test_start_days"]
    if overlap > 0:
        typer.echo(
            f"note: validation labels look up to {overlap:g} days past the test window's "
            "start, so early stopping and calibration saw outcomes of its period "
            "(split.validation_embargo_days closes this)"
        )
    if result.decision is not None:
        verdict = "champion" if result.decision.promoted else "not promoted"
        typer.echo(f"gate: {verdict}: {result.decision.reason}")


def _settings(config: Path | None) -> TrainingConfig:
    """The settings of ``--config``; an invalid file is a ``ConfigError`` naming it."""
    try:
        return load_training_config(config)
    except ValidationError as error:
        source = config or DEFAULT_CONFIG_FILE
        problems = setting_problems(error)
        raise ConfigError(f"{source}: invalid training settings: {problems}") from error


def _metric_line(name: str, metrics: dict[str, float]) -> str:
    shown = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "capture_top_20")
    return f"  {name:<17}" + "  ".join(f"{k}={metrics[k]:.4f}" for k in shown)


def evaluate(
    data: DataOption,
    out: Annotated[
        Path, typer.Option("--out", help="Predictions file to write, .parquet or .csv.")
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a model folder.",
        ),
    ] = DEFAULT_MODEL_URI,
) -> None:
    """Score every labelled, fully observed example; print the metrics as JSON.

    Every example is written, with seen_in_fitting saying whether the model may have been
    trained or calibrated on it; the metrics count only the examples it was not fitted on.

    Exit code 0: written; 1: the export or the model is unusable, or the file could not be
    written (a previous file at --out is left as it was); 2: bad command line, including an
    --out that cannot be written (checked before any work).
    """
    from training.evaluate import evaluate as run_evaluation

    target = checked_output(out, data=data)
    try:
        document = run_evaluation(data, model, target)
    except (ContractError, ModelLoadError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    except OSError as error:
        raise write_failed(error) from error
    typer.echo(json.dumps(document, indent=2))


def models(
    name: NameOption = DEFAULT_MODEL_NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
) -> None:
    """List registered versions with their aliases and headline test metrics."""
    from training.registry import RegistryError, list_versions

    try:
        rows = list_versions(name)
    except RegistryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        f"{'version':>7}  {'aliases':<22} {'created':<25} {'predicts':<28} {'roc_auc':>7} "
        f"{'pr_auc':>7} {'ece':>7}  run"
    )
    for row in rows:
        metrics = row["metrics"]
        typer.echo(
            f"{row['version']:>7}  {','.join(row['aliases']) or '-':<22} {row['created']:<25} "
            f"{row['predicts'] or '-':<28} {_cell(metrics.get('roc_auc'))} "
            f"{_cell(metrics.get('pr_auc'))} {_cell(metrics.get('ece'))}  {row['run_id']}"
        )


def _cell(value: float | str | None) -> str:
    return f"{value:>7.4f}" if isinstance(value, float) else f"{'-':>7}"


def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    name: NameOption = DEFAULT_MODEL_NAME,
    reason: ReasonOption = "manual promotion",
) -> None:
    """Make VERSION the champion by hand, overriding the gate (recorded as tags)."""
    _registry_action("promote", name, reason, version)


def rollback(
    name: NameOption = DEFAULT_MODEL_NAME,
    reason: ReasonOption = "rollback",
) -> None:
    """Give the champion alias back to the version the current champion replaced."""
    _registry_action("rollback", name, reason)


def _registry_action(
    action: Literal["promote", "rollback"], name: str, reason: str, version: str | None = None
) -> None:
    from training import registry

    try:
        if action == "promote":
            assert version is not None
            event = registry.promote(name, version, reason)
        else:
            event = registry.rollback(name, reason)
    except registry.RegistryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(
        f"{name}: champion is now version {event['champion']} (was {event['replaced'] or 'none'})"
    )


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``srl`` application."""
    app.command()(train)
    app.command()(evaluate)
    app.command()(models)
    app.command()(promote)
    app.command()(rollback)
