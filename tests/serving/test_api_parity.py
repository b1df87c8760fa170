"""Parity: the API scores a lead exactly as the model scores it from the export (1e-9).

The reference is ``ReconversionModel.predict_set`` on the export's own example rows, the
path ``srl evaluate`` and the batch job take; the API gets the lead's raw rows as JSON
(``features.requests.request_body``, which also sends rows after ``as_of``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.dataset import ExampleSet
from features.loading import Export
from features.predictor import ReconversionModel
from features.requests import request_body
from tests.serving.conftest import TestClient

SAMPLE = 60


@pytest.fixture(scope="module")
def sample(training_examples: ExampleSet) -> ExampleSet:
    """Examples at every re-scoring offset, spread over the export."""
    rows = np.linspace(0, len(training_examples) - 1, SAMPLE).astype(int)
    return training_examples.take(rows)


def _bodies(export: Export, examples: ExampleSet) -> list[dict[str, object]]:
    keys = examples.keys
    return [
        request_body(export, keys.at[i, "rejection_id"], keys.at[i, "as_of"])
        for i in range(len(keys))
    ]


def test_single_requests_match_the_model_on_the_export(
    client: TestClient, model_dir: Path, small_export: Export, sample: ExampleSet
) -> None:
    expected = ReconversionModel.load(model_dir).predict_set(sample)
    assert len(set(sample.keys["offset_days"])) > 1

    answers = [client.post("/v1/score", json=body) for body in _bodies(small_export, sample)]

    assert all(a.status_code == 200 for a in answers)
    got = np.array([a.json()["probability"] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [a.json()["rejection_id"] for a in answers] == list(sample.keys["rejection_id"])


def test_a_batch_matches_the_model_on_the_export(
    client: TestClient, model_dir: Path, small_export: Export, sample: ExampleSet
) -> None:
    expected = ReconversionModel.load(model_dir).predict_set(sample)

    answer = client.post("/v1/score/batch", json={"items": _bodies(small_export, sample)})

    assert answer.status_code == 200
    got = np.array([r["probability"] for r in answer.json()["results"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_routes_and_reasons_match_the_shared_scoring_path(
    client: TestClient, model_dir: Path, small_export: Export, sample: ExampleSet
) -> None:
    from features.history import history_from_export
    from serving.contact import ContactNow
    from serving.policy import load_policy
    from serving.reasons import explain
    from serving.scoring import score_features

    model = ReconversionModel.load(model_dir)
    as_of = (sample.keys["as_of"].astype("int64") // 1000).to_numpy()
    # The bodies carry each lead's every row (rejections up to the scored one), so routing
    # sees its latest consent too; the generator writes every do_not_contact rejection as
    # a consent row as well, so a later one suppresses in both paths
    history = history_from_export(small_export, model.config)
    lead = pd.Index(history.lead_id).get_indexer(sample.keys["lead_id"])
    contact = ContactNow.read(history, lead, as_of)
    scored = score_features(model, sample.features, as_of, load_policy(), contact=contact)
    reasons = explain(model, sample.features, scored.matrix, top_k=3)

    answer = client.post("/v1/score/batch", json={"items": _bodies(small_export, sample)})

    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(sample)
    for index, result in enumerate(results):
        route = scored.routes.row(index)
        assert (result["program"], result["tier"], result["suppressed"]) == (
            route["program"],
            route["tier"],
            route["suppressed"],
        )
        assert [r["feature"] for r in result["reasons"]] == [r.feature for r in reasons[index]]
