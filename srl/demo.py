"""``srl demo``: the quick start, end to end on a generated export.

Generate a CRM export, validate it, build the example table, train and register a model in a
local MLflow store, promote it, then serve it on 127.0.0.1 with a ready-to-paste ``curl``.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from features.cli import checked_output
from features.config import FeatureConfig
from features.dataset import build_scoring_set, build_training_set
from features.loading import Export, load_export
from features.output import check_output_directory, write_table
from features.requests import request_body
from features.summary import format_summary, summarise_export

logger = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path(".srl/demo")


def prepare_export(workdir: Path, leads: int, seed: int) -> Path:
    """Generate the demo export once (reused when it already exists)."""
    from features.synthetic import generate_export

    export_dir = workdir / "export"
    if not (export_dir / "leads.parquet").exists():
        generate_export(export_dir, leads, seed, "parquet")
    return export_dir


def write_feature_table(export: Export, workdir: Path) -> Path:
    """Write the example table the model is trained on, for inspection."""
    from features.cli import example_frame

    examples = build_training_set(export, FeatureConfig())
    return write_table(example_frame(examples), workdir / "features.parquet")


def write_sample_request(export: Export, workdir: Path, model_uri: str) -> Path:
    """Write the API body of the open rejection the model rates highest, at the snapshot."""
    from features.model_store import load_model

    model = load_model(model_uri).model
    open_now = build_scoring_set(export, model.config)
    contactable = open_now.features.columns["consent_status"] == 0
    probability = np.where(contactable, model.predict_set(open_now), -1.0)
    rejection_id = str(open_now.keys["rejection_id"].iloc[int(probability.argmax())])
    body = request_body(export, rejection_id, export.snapshot_at)
    path = workdir / "request.json"
    path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    return path


def curl_command(request_file: Path, host: str, port: int) -> str:
    """The ready-to-paste ``curl`` that scores the sample request."""
    url = f"http://{host}:{port}/v1/score"
    return (
        f"curl -s -X POST {url} -H 'Content-Type: application/json' "
        f"-d @{shlex.quote(str(request_file))}"
    )


def demo(
    leads: Annotated[int, typer.Option(help="Leads in the generated export.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the generated export.")] = 7,
    workdir: Annotated[
        Path, typer.Option(help="Where the demo export and files go.")
    ] = DEFAULT_WORKDIR,
    host: Annotated[str, typer.Option(help="Address the API binds to.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the API at the end.")
    ] = True,
) -> None:
    """Generate, validate, featurise, train, register and serve: the whole product."""
    checked_output(workdir, check_output_directory, "--workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    export_dir = prepare_export(workdir, leads, seed)
    export = load_export(export_dir)
    typer.echo(f"1/5 export: {export_dir}\n{format_summary(summarise_export(export))}")
    typer.echo(f"2/5 example table: {write_feature_table(export, workdir)}")
    model_uri = _train(export_dir)
    request_file = write_sample_request(export, workdir, model_uri)
    typer.echo(f"4/5 sample request: {request_file}")
    command = curl_command(request_file, host, port)
    if not serve:
        typer.echo(f"5/5 serve with `srl serve --model {model_uri}`, then:\n{command}")
        return
    typer.echo(f"5/5 serving {model_uri} on http://{host}:{port}; in another terminal:\n{command}")
    _serve(model_uri, host, port)


def _train(export_dir: Path) -> str:
    """Train, register and gate a model; return the URI to serve: the champion, or the new
    version by number when the gate kept it out and there is no champion yet."""
    from training.workflow import train_register_and_gate

    outcome = train_register_and_gate(export_dir)
    typer.echo(f"3/5 trained and registered: {outcome.sentence}")
    return outcome.model_uri


def _serve(model_uri: str, host: str, port: int) -> None:
    from serving.cli import serve

    serve(host=host, port=port, model=model_uri)


def register(app: typer.Typer) -> None:
    """Add ``srl demo`` to the application."""
    app.command()(demo)
