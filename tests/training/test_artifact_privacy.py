"""No text of the export reaches what ``srl train`` stores: notes, names, contacts, ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from features.contract import EVENT_TIME_COLUMN
from features.loading import load_export
from features.records import ScoreRequest
from tests.trained_store import FAST
from training.config import load_training_config
from training.train import TrainingResult, train

pytestmark = pytest.mark.slow

#: What a rep wrote and what the CRM holds about people: none of it may be stored.
SECRETS = ("Jane Doe", "555-0100", "jane.doe@", "@acme", "acme example", "jane doe")
#: A custom column declared as a feature that holds the account owners' e-mail addresses:
#: few distinct values, each frequent enough for the category vocabulary.
OWNER_COLUMN = "crm_custom_owner"


@dataclass(frozen=True)
class Run:
    """One training run on an export full of personal text, and where it stored things."""

    result: TrainingResult
    root: Path
    export_dir: Path


def _with_personal_text(source: Path, target: Path) -> Path:
    """A copy of ``source`` whose text fields all name a person and a phone number."""
    target.mkdir(parents=True)
    note = "spoke to Jane Doe, mobile +1-555-0100 ext {}"
    for path in source.glob("*.parquet"):
        frame = pd.read_parquet(path)
        numbers = [str(i) for i in range(len(frame))]
        if path.stem == "leads":
            frame["job_title"] = [f"Jane Doe's assistant {i}" for i in numbers]
            frame["account_id"] = [f"Jane Doe Ltd {i}" for i in numbers]
            frame["email"] = [f"jane.doe@example.invalid{i}" for i in numbers]
            frame["first_name"], frame["last_name"] = "Jane", "Doe"
            frame[OWNER_COLUMN] = [f"owner{int(i) % 4}@acme.example" for i in numbers]
            frame.loc[::7, "industry"] = frame["email"]  # a shifted row's address
        if path.stem == "rejections":
            frame["reason_detail"] = [note.format(i) for i in numbers]
            frame["rep_id"] = [f"Jane Doe +1-555-0100 {i}" for i in numbers]
        if path.stem == "opportunities":
            frame["loss_reason"] = [note.format(i) for i in numbers]
        frame.to_parquet(target / path.name, index=False)
    return target


@pytest.fixture(scope="module")
def run(small_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One small training run (registered) on the personal-text export, in its own store."""
    root = tmp_path_factory.mktemp("private")
    export_dir = _with_personal_text(small_export_dir, root / "export")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.setenv("SRL_ARTIFACT_ROOT", str(root / "artifacts"))
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        try:
            custom = {"numeric": [], "categorical": [OWNER_COLUMN]}
            config = load_training_config().with_overrides(
                **FAST, **{"features.custom_columns": custom}
            )
            result = train(export_dir, config)
        finally:
            mlflow.set_tracking_uri(None)
    return Run(result, root, export_dir)


def test_no_note_name_or_contact_is_in_any_artifact_or_the_store(run: Run) -> None:
    # Given a run on an export whose notes, titles and ids name Jane Doe and her phone
    stored = [p for p in run.root.rglob("*") if p.is_file() and run.export_dir not in p.parents]

    # Then no stored file holds them: input examples, reports, plots, model, the sqlite store
    assert any(p.name == "input_example.json" for p in stored)
    assert any(p.name == "metrics.json" for p in stored)
    for path in stored:
        content = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in content, (path.relative_to(run.root), secret)


def test_the_input_example_keeps_the_request_shape_with_placeholder_keys(run: Run) -> None:
    (stored,) = (run.root / "artifacts").rglob("input_example.json")

    example = json.loads(stored.read_text(encoding="utf-8"))
    body = example[0] if isinstance(example, list) else example["inputs"][0]

    request = ScoreRequest.model_validate(body)
    assert request.lead.lead_id == request.rejection.lead_id == "L1"
    assert request.rejection.rejection_id == "R1"
    assert request.rejection.reason_detail is None
    assert request.lead.job_title is None
    assert request.lead.account_id is None
    assert request.rejection.reason_code is not None
    assert all(a.activity_id == f"A{i + 1}" for i, a in enumerate(request.activities))


def test_the_input_example_holds_no_time_or_number_of_the_exports_lead(run: Run) -> None:
    (stored,) = (run.root / "artifacts").rglob("input_example.json")
    example = json.loads(stored.read_text(encoding="utf-8"))
    request = ScoreRequest.model_validate(example[0] if isinstance(example, list) else example)
    export = load_export(run.export_dir)

    # Its times are moved to put as_of on one fixed day: none is a time of the export
    assert request.as_of is not None
    assert request.as_of.date() == date(2020, 1, 1)
    times = {request.lead.created_at, request.rejection.rejected_at}
    times |= {activity.occurred_at for activity in request.activities}
    exported = {
        moment.to_pydatetime()
        for name, column in EVENT_TIME_COLUMN.items()
        for moment in export.tables[name][column].dropna()
    }
    assert not times & exported
    # And no number that could single the lead out, and a few rows of each list
    assert request.lead.annual_revenue is None
    assert request.lead.employee_count is None
    assert request.rejection.lead_score_at_rejection is None
    assert 1 <= len(request.activities) <= 3
