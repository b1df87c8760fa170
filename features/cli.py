"""``srl validate``, ``srl generate``, ``srl features`` and ``srl catalogue``."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from features.catalogue import catalogue_markdown, contract_markdown
from features.config import load_feature_config
from features.dataset import ExampleSet, build_training_set
from features.loading import load_export
from features.output import write_table
from features.problems import ContractError
from features.summary import format_summary, summarise_export

logger = logging.getLogger(__name__)

DataOption = Annotated[
    Path, typer.Option("--data", help="Export directory: leads, activities, rejections, ...")
]
SnapshotOption = Annotated[
    datetime | None,
    typer.Option(
        "--snapshot-at",
        help="The export's end (UTC) for censoring; default: its latest event time.",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Feature/training YAML (defaults when absent).")
]


def validate(
    data: DataOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
    horizon_days: Annotated[
        int, typer.Option(help="Horizon used to count observed and censored outcomes.")
    ] = 365,
    snapshot_at: SnapshotOption = None,
) -> None:
    """Check an export against the data contract and summarise it (exit 1 on problems)."""
    try:
        export = load_export(data, snapshot_at=as_utc(snapshot_at))
    except ContractError as error:
        _report_problems(error, as_json)
        raise typer.Exit(1) from error
    summary = summarise_export(export, horizon_days)
    typer.echo(
        json.dumps({"valid": True, **summary}, indent=2) if as_json else format_summary(summary)
    )


def as_utc(moment: datetime | None) -> pd.Timestamp | None:
    """A command-line moment as a UTC timestamp (no offset means UTC)."""
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _report_problems(error: ContractError, as_json: bool) -> None:
    if as_json:
        document = {"valid": False, "problems": [p.to_dict() for p in error.problems]}
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"{len(error.problems)} problem(s):", err=True)
    for problem in error.problems:
        typer.echo(f"  - {problem}", err=True)


def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the export into.")],
    leads: Annotated[int, typer.Option("--leads", min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="File format: parquet or csv.")] = "parquet",
) -> None:
    """Generate a realistic synthetic CRM export (deterministic per seed)."""
    from features.synthetic import generate_export

    if fmt not in ("parquet", "csv"):
        raise typer.BadParameter("must be parquet or csv", param_hint="--format")
    file_format: Literal["parquet", "csv"] = "parquet" if fmt == "parquet" else "csv"
    files = generate_export(out, leads, seed, file_format)
    typer.echo(f"wrote {len(files)} tables for {leads:,} leads to {out}")


def features(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Output file, .parquet or .csv.")],
    config: ConfigOption = None,
    snapshot_at: SnapshotOption = None,
) -> None:
    """Write the example table: keys, as_of, features, label and censored flag."""
    try:
        feature_config = load_feature_config(config)
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    try:
        export = load_export(data, snapshot_at=as_utc(snapshot_at))
    except ContractError as error:
        _report_problems(error, as_json=False)
        raise typer.Exit(1) from error
    examples = build_training_set(export, feature_config)
    write_table(example_frame(examples), out)
    censored = int(examples.labels.censored.sum()) if examples.labels is not None else 0
    typer.echo(f"wrote {len(examples):,} examples ({censored:,} censored) to {out}")


def example_frame(examples: ExampleSet) -> pd.DataFrame:
    """Keys, readable features (categories as labels), label and censored flag."""
    columns: dict[str, object] = {}
    for spec in examples.features.specs:
        values = examples.features.columns[spec.name]
        if spec.kind == "category":
            labels = pd.Categorical.from_codes(
                pd.Series(values).fillna(-1).astype(int), categories=list(spec.vocabulary)
            )
            columns[spec.name] = labels
        else:
            columns[spec.name] = values
    keys = examples.keys.drop(columns=[c for c in examples.keys.columns if c in columns])
    frame = pd.concat([keys, pd.DataFrame(columns)], axis=1)
    if examples.labels is not None:
        frame["label"] = examples.labels.target
        frame["reconverted"] = examples.labels.reconverted
        frame["won"] = examples.labels.won
        frame["censored"] = examples.labels.censored
        frame["days_to_reconversion"] = examples.labels.days_to_reconversion
    return frame


def catalogue(
    docs: Annotated[Path, typer.Option("--docs", help="Folder to write the Markdown into.")] = Path(
        "docs"
    ),
    config: ConfigOption = None,
) -> None:
    """Write docs/feature-catalogue.md and docs/data-contract.md, generated from the code."""
    docs.mkdir(parents=True, exist_ok=True)
    written = {
        docs / "feature-catalogue.md": catalogue_markdown(load_feature_config(config)),
        docs / "data-contract.md": contract_markdown(),
    }
    for path, text in written.items():
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``srl`` application."""
    app.command()(validate)
    app.command()(generate)
    app.command()(features)
    app.command()(catalogue)
