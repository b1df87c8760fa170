"""The batch job, the API and ``srl evaluate`` give one lead at one ``as_of`` the same answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loading import Export
from features.requests import request_body
from serving.batch import run_batch
from tests.serving.batch_support import read_output, request
from tests.serving.conftest import TestClient
from training.evaluate import evaluate


@pytest.fixture(scope="module")
def evaluated(
    small_export_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    """``srl evaluate``'s predictions for the small export."""
    out = tmp_path_factory.mktemp("evaluate") / "predictions.parquet"
    evaluate(small_export_dir, str(model_dir), out)
    return pd.read_parquet(out)


def _picked(evaluated: pd.DataFrame) -> pd.DataFrame:
    """A few examples: scored at rejection and re-scored later, with varied outcomes."""
    at_rejection = evaluated.groupby("label").head(1)
    later = evaluated.loc[evaluated.groupby("lead_id")["as_of"].transform("count") > 1].tail(2)
    return pd.concat([at_rejection, later])


def test_batch_api_and_evaluate_agree_for_the_same_lead_and_moment(
    small_export_dir: Path,
    small_export: Export,
    model_dir: Path,
    evaluated: pd.DataFrame,
    client: TestClient,
    tmp_path: Path,
) -> None:
    picked = _picked(evaluated)
    assert len(picked) >= 3

    for number, example in enumerate(picked.itertuples(index=False)):
        out = tmp_path / f"batch-{number}.parquet"
        moment = example.as_of.to_pydatetime()
        run_batch(request(small_export_dir, out, model_dir, as_of=moment, reasons="top"))
        batch = read_output(out).set_index("rejection_id").loc[example.rejection_id]
        body = request_body(small_export, example.rejection_id, example.as_of)
        response = client.post("/v1/score", json=body)
        assert response.status_code == 200, response.text
        api = response.json()

        assert batch["probability"] == pytest.approx(example.probability, abs=1e-9)
        assert api["probability"] == pytest.approx(batch["probability"], abs=1e-9)
        assert (api["tier"], api["program"], api["suppressed"]) == (
            batch["tier"],
            batch["program"],
            batch["suppressed"],
        )
        assert api["beyond_trained_age"] == batch["beyond_trained_age"]
        assert api["routing"]["priority"] == batch["priority"]
        assert api["routing"]["re_entry_stage"] == batch["re_entry_stage"]
        assert api["routing"]["next_action_date"] == _date(batch["next_action_date"])
        assert api["model_version"] == batch["model_version"]
        assert api["reasons"] == json.loads(batch["reasons"])


def _date(value: object) -> str | None:
    return None if value is None else str(value)


def test_single_lead_calls_match_srl_evaluate_on_many_examples(
    small_export: Export, evaluated: pd.DataFrame, client: TestClient
) -> None:
    # Rejections scored at several moments (at rejection, then re-scored), and a spread
    rescored = evaluated[evaluated.groupby("rejection_id")["as_of"].transform("count") > 1]
    rows = np.unique(np.linspace(0, len(evaluated) - 1, min(100, len(evaluated))).astype(int))
    sample = pd.concat([rescored.head(60), evaluated.iloc[rows]])
    sample = sample.drop_duplicates(["rejection_id", "as_of"])
    assert (sample.groupby("rejection_id")["as_of"].nunique() > 1).sum() >= 10
    assert sample["label"].nunique() == 2

    answers = [
        client.post("/v1/score", json=request_body(small_export, row.rejection_id, row.as_of))
        for row in sample.itertuples(index=False)
    ]

    assert all(answer.status_code == 200 for answer in answers)
    assert [a.json()["rejection_id"] for a in answers] == list(sample["rejection_id"])
    got = np.array([answer.json()["probability"] for answer in answers])
    np.testing.assert_allclose(got, sample["probability"].to_numpy(), rtol=0, atol=1e-9)
