"""Reasons: TreeSHAP factors ranked per row and phrased in plain words."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.catalogue import feature_specs
from features.config import CustomColumns, FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.encoding import CategoryVocabulary
from features.engine import FeatureSpec
from features.loading import Export
from features.predictor import ReconversionModel
from serving.examples import EXAMPLE_REQUEST
from serving.phrases import OTHER_VALUE, display_value, phrase_for
from serving.reasons import Reason, explain, explain_rows, rank_factors
from tests.serving.batch_support import copy_as_csv, read_output, run_score, score_command
from tests.serving.conftest import TestClient, api_settings, create_app, train_model

ROWS = 200
#: Free text a rep or a CRM might hold: personal, and never a learned category.
PERSONAL = "call Jane Doe +1 555 0100"
NO_VOCABULARY = CategoryVocabulary({})


@pytest.fixture(scope="module")
def rows(training_examples: ExampleSet) -> ExampleSet:
    return training_examples.take(np.arange(ROWS))


def _spec(name: str) -> FeatureSpec:
    return next(s for s in feature_specs(FeatureConfig()) if s.name == name)


def test_all_reasons_add_up_to_the_raw_score(model: ReconversionModel, rows: ExampleSet) -> None:
    # Given every non-zero factor of each row
    matrix = model.matrix(rows.features)
    reasons = explain(model, rows.features, matrix, top_k=None)
    # Then they and the expected value add up to the booster's raw log-odds, plus the log
    # of the age factor for rejections older than the model knows
    expected = model.contributions(matrix)[:, -1]
    raw = model.booster.predict(matrix, raw_score=True)
    factors = model.age_factors(matrix)
    assert factors is not None
    assert (factors < 1).any()
    totals = np.array([sum(r.contribution for r in row) for row in reasons]) + expected
    np.testing.assert_allclose(totals, raw + np.log(factors), atol=1e-9)


def _expected_top(full: list[Reason], k: int) -> list[str]:
    """The k strongest factors, the weakest giving way to the strongest of the other
    direction when all k push one way and the other direction exists."""
    best = full[:k]
    directions = {r.direction for r in best}
    other = [r for r in full if r.direction not in directions]
    if k >= 2 and len(directions) == 1 and other:
        best = [*best[:-1], other[0]]
    return [r.feature for r in sorted(best, key=lambda r: -abs(r.contribution))]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_reasons_are_the_strongest_in_order_with_both_directions(
    model: ReconversionModel, rows: ExampleSet, k: int
) -> None:
    matrix = model.matrix(rows.features)
    everything = explain(model, rows.features, matrix, top_k=None)
    top = explain(model, rows.features, matrix, top_k=k)
    for full, best in zip(everything, top, strict=True):
        strengths = [abs(r.contribution) for r in full]
        assert strengths == sorted(strengths, reverse=True)
        assert [r.feature for r in best] == _expected_top(full, k)
        assert [abs(r.contribution) for r in best] == sorted(
            (abs(r.contribution) for r in best), reverse=True
        )
        assert all(r.direction == ("up" if r.contribution > 0 else "down") for r in best)
        assert all(r.contribution != 0 for r in full)
        if k >= 2 and {r.direction for r in full} == {"up", "down"}:
            assert {r.direction for r in best} == {"up", "down"}


def test_batch_and_single_rows_explain_alike(model: ReconversionModel, rows: ExampleSet) -> None:
    batch = explain(model, rows.features, model.matrix(rows.features), top_k=5)
    for index in range(0, ROWS, 37):
        one = rows.take(np.array([index]))
        (single,) = explain(model, one.features, model.matrix(one.features), top_k=5)
        assert [(r.feature, r.text, r.value) for r in single] == [
            (r.feature, r.text, r.value) for r in batch[index]
        ]
        np.testing.assert_allclose(
            [r.contribution for r in single], [r.contribution for r in batch[index]], atol=1e-12
        )


def test_explain_rows_explains_the_rows_asked_for_in_their_order(
    model: ReconversionModel, rows: ExampleSet
) -> None:
    batch = explain(model, rows.features, model.matrix(rows.features), top_k=4)

    picked = explain_rows(model, rows, [150, 3, 77], top_k=4)

    assert [[(r.feature, r.text) for r in reasons] for reasons in picked] == [
        [(r.feature, r.text) for r in batch[row]] for row in (150, 3, 77)
    ]
    assert explain_rows(model, rows, []) == []


def test_no_rows_and_no_factors(model: ReconversionModel, rows: ExampleSet) -> None:
    empty = rows.take(np.zeros(ROWS, dtype=bool))
    assert explain(model, empty.features, model.matrix(empty.features)) == []
    assert explain(model, rows.features, model.matrix(rows.features), top_k=0)[:2] == [[], []]


def test_values_are_the_rows_own_labels_and_numbers(
    model: ReconversionModel, rows: ExampleSet
) -> None:
    reasons = explain(model, rows.features, model.matrix(rows.features), top_k=None)
    specs = {s.name: s for s in rows.features.specs}
    shown = 0
    for row, row_reasons in enumerate(reasons):
        for reason in row_reasons:
            spec, raw = specs[reason.feature], rows.features.columns[reason.feature][row]
            if spec.kind == "category":  # the label of the row's code; missing: no value
                expected = None if np.isnan(raw) else spec.vocabulary[int(raw)]
                assert reason.value == expected
            elif spec.kind == "numeric":  # the row's own number; missing: no value
                assert reason.value == (None if np.isnan(raw) else float(raw))
            shown += reason.value is not None
    # And most factors carry a value: a missing one is the exception, not the rule
    assert shown > sum(len(r) for r in reasons) / 2


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("pricing_page_visit_30d", 3.0, "3 pricing-page visits in the 30 days before scoring"),
        ("pricing_page_visit_30d", 1.0, "1 pricing-page visit in the 30 days before scoring"),
        ("demo_request_since_rejection", 0.0, "no demo requests since the rejection"),
        ("intent_pre_rejection_30d", 2.0, "2 buying signals in the 30 days before the rejection"),
        ("reason_code", 0.0, "rejected for budget"),
        ("reason_code", 2.0, "rejected because a competitor won"),
        # follow_up_days runs from the scoring moment to the date's midnight: scored at
        # 16:48 UTC, a date 13 days on is 12.3 days away, one on the scoring day -0.7
        ("follow_up_days", 12.3, "follow-up date is in 13 days"),
        ("follow_up_days", 0.375, "follow-up date is in 1 day"),
        ("follow_up_days", -0.7, "follow-up date is today"),
        ("follow_up_days", 0.0, "follow-up date is today"),
        ("follow_up_days", -1.2, "follow-up date passed 1 day ago"),
        ("follow_up_days", -4.0, "follow-up date passed 4 days ago"),
        ("follow_up_days", float("nan"), "no follow-up date set"),
        ("days_since_pricing_page_visit", float("nan"), "no pricing-page visit on record"),
        ("days_since_demo_request", 9.6, "last demo request 10 days ago"),
        ("days_since_demo_request", 0.4, "last demo request within the last day"),
        ("earlier_rejections_budget", 2.0, "2 earlier rejections for budget"),
        ("consent_status", 1.0, "consent: unsubscribed"),
        ("stage_at_rejection", 2.0, "stage at rejection: SQL"),
        ("amount_won", 48000.0, "$48,000 won before"),
        ("amount_won", 3.24e9, "$3.2B won before"),
        ("amount_lost", -48000.0, "-$48,000 lost before"),
        ("amount_won", 1.7976931348623157e308, "$1.8e+308 won before"),
        ("lead_score_at_rejection", -1.79e308, "marketing score -1.8e+308 at rejection"),
        ("annual_revenue", 12_500_000.0, "annual revenue $12.5M"),
        ("marketing_trend", 0.2, "marketing touches rising over the last 30 days"),
        ("points_qualified", 1.0, "passes the classic qualification rule"),
        ("as_of_month", 3.0, "scored in March"),
        ("rep_potential", 0.0, "rep rated future potential high"),
        ("rep_potential", 3.0, "rep sees no future potential"),
        ("rep_potential", float("nan"), "rep gave no view of potential"),
        ("employee_count", 1.0, "1 employee"),
        ("employee_count", 250.0, "250 employees"),
        ("fit_points", 1.0, "1 fit point in the classic score"),
        ("behaviour_points", 1.0, "1 behaviour point in the classic score"),
        ("behaviour_points", 6.0, "6 behaviour points in the classic score"),
    ],
)
def test_phrases_read_as_plain_words(feature: str, value: float, text: str) -> None:
    spec = _spec(feature)
    assert phrase_for(spec)(display_value(spec, value, NO_VOCABULARY)) == text


def test_text_features_show_their_value_only_when_learned() -> None:
    industry, country = _spec("industry"), _spec("country")
    learned = CategoryVocabulary({"industry": ("software",), "country": ("de",)})

    def shown(spec: FeatureSpec, raw: str | None) -> str:
        return phrase_for(spec)(display_value(spec, raw, learned))

    assert shown(industry, "software") == "industry: software"
    assert shown(country, "de") == "country: DE"
    assert shown(industry, None) == "industry not recorded"
    assert display_value(industry, "jane doe ltd", learned) == OTHER_VALUE
    assert shown(industry, "jane doe ltd") == "industry: other (a value the model has not learned)"
    assert shown(country, "fr") == "country: other (a value the model has not learned)"


@pytest.mark.parametrize("value", [None, 0.0, 1.0, 2.5, -3.0, 45.0])
def test_every_catalogue_feature_has_a_real_phrase(value: float | None) -> None:
    # No phrase falls back to a raw feature name (with underscores) for any value
    for spec in feature_specs(FeatureConfig()):
        shown: float | str | None
        if spec.kind == "category":
            position = int(abs(value or 0)) % len(spec.vocabulary)
            shown = None if value is None else spec.vocabulary[position]
        elif spec.kind == "text":
            shown = None if value is None else "software"
        elif spec.name == "as_of_month":
            shown = None if value is None else 5.0
        else:
            shown = value
        text = phrase_for(spec)(shown)
        assert text, spec.name
        assert "_" not in text, (spec.name, text)


def test_a_row_pushed_one_way_shows_its_strongest_factor_the_other_way() -> None:
    contributions = np.array(
        [
            [0.9, 0.8, 0.7, -0.1, 0.0],  # all strongest up: the weakest gives way to -0.1
            [-0.9, -0.8, -0.7, 0.2, 0.1],  # all strongest down: 0.2 takes the third place
            [0.9, -0.8, 0.7, -0.1, 0.0],  # both already shown
            [0.9, 0.8, 0.7, 0.1, 0.0],  # nothing pushes down
        ]
    )

    assert rank_factors(contributions, 3).tolist() == [[0, 1, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2]]
    assert rank_factors(contributions, 1).tolist() == [[0], [0], [0], [0]]


def test_rank_factors_handles_k_beyond_the_width() -> None:
    contributions = np.array([[0.1, -0.5, 0.0], [0.0, 0.0, 0.3]])
    assert rank_factors(contributions, 10).tolist() == [[1, 0, 2], [2, 0, 1]]
    assert rank_factors(contributions, 1).tolist() == [[1], [2]]


def test_another_thread_predicts_exactly_as_the_thread_that_made_the_model(
    model: ReconversionModel, rows: ExampleSet
) -> None:
    matrix = model.matrix(rows.features)
    here = (model.predict_matrix(matrix), model.contributions(matrix))

    with ThreadPoolExecutor(max_workers=1) as pool:
        booster = pool.submit(model.thread_booster).result()
        there = pool.submit(lambda: (model.predict_matrix(matrix), model.contributions(matrix)))
        elsewhere = there.result()

    assert model.thread_booster() is model.booster
    assert booster is not model.booster
    np.testing.assert_array_equal(elsewhere[0], here[0])
    np.testing.assert_array_equal(elsewhere[1], here[1])


def _personal_reasons(response: Any, features: set[str]) -> list[dict[str, Any]]:
    """The answer's reasons for ``features``, after checking no personal text came back."""
    assert response.status_code == 200, response.text
    assert "jane" not in response.text.lower()
    assert "+1 555" not in response.text
    reasons = [r for r in response.json()["reasons"] if r["feature"] in features]
    assert reasons, "the free-text features should be among the factors"
    return reasons


def test_the_api_never_echoes_free_text_the_model_did_not_learn(client: TestClient) -> None:
    # Given a lead whose free-text fields hold personal text, never a learned category
    body = copy.deepcopy(EXAMPLE_REQUEST)
    body["rejection"]["recommended_program"] = PERSONAL
    body["lead"]["industry"] = f"{PERSONAL} industries"
    body["lead"]["country"] = PERSONAL

    # When it is scored with every factor
    response = client.post("/v1/score", json=body, params={"reasons": 50})

    # Then those factors read as the model sees them: another, unlearned category
    texts = {"recommended_program", "industry", "country"}
    for reason in _personal_reasons(response, texts):
        assert reason["value"] == OTHER_VALUE
        assert reason["text"].endswith(": other (a value the model has not learned)")


CUSTOM = FeatureConfig(custom_columns=CustomColumns(categorical=("crm_custom_tech_stack",)))


@pytest.fixture(scope="module")
def custom_model_dir(small_export: Export, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model using the generated export's custom category ``crm_custom_tech_stack``."""
    examples = uncensored(build_training_set(small_export, CUSTOM))
    model = train_model(examples, config=CUSTOM)
    return model.save(tmp_path_factory.mktemp("custom-model") / "v1")


def test_a_custom_category_shows_only_learned_values(custom_model_dir: Path) -> None:
    # Given a lead with personal text in a custom categorical column, and one with a
    # learned category there
    personal, learned = copy.deepcopy(EXAMPLE_REQUEST), copy.deepcopy(EXAMPLE_REQUEST)
    personal["lead"]["crm_custom_tech_stack"] = PERSONAL
    learned["lead"]["crm_custom_tech_stack"] = "Salesforce"

    with TestClient(create_app(api_settings(custom_model_dir))) as client:
        unknown = client.post("/v1/score", json=personal, params={"reasons": 50})
        known = client.post("/v1/score", json=learned, params={"reasons": 50})

    # Then the personal text reads as another category and the learned one by its label
    (reason,) = _personal_reasons(unknown, {"crm_custom_tech_stack"})
    assert reason["value"] == OTHER_VALUE
    assert reason["text"] == "crm custom tech stack: other (a value the model has not learned)"
    (reason,) = _personal_reasons(known, {"crm_custom_tech_stack"})
    assert (reason["value"], reason["text"]) == ("salesforce", "crm custom tech stack: salesforce")


@pytest.mark.slow
def test_the_batch_jobs_reasons_never_echo_free_text_the_model_did_not_learn(
    small_export_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given an export whose rejections name a personal "program" and whose leads a personal
    # industry
    data = copy_as_csv(small_export_dir, tmp_path / "export")
    for table, column in [("rejections", "recommended_program"), ("leads", "industry")]:
        frame = pd.read_csv(data / f"{table}.csv", dtype=str, keep_default_na=False)
        frame[column] = PERSONAL
        frame.to_csv(data / f"{table}.csv", index=False)
    out = tmp_path / "scores.parquet"

    # When ``srl score`` writes every factor of every lead
    result = run_score(score_command(data, out, model_dir, "--reasons", "all"))

    # Then no reason holds the text, and those factors read as another category
    assert result.returncode == 0, result.stderr[-3000:]
    written = [r for row in read_output(out)["reasons"] for r in json.loads(row)]
    assert not [r for r in written if "jane" in json.dumps(r).lower()]
    free_text = [r for r in written if r["feature"] in {"recommended_program", "industry"}]
    assert free_text
    assert {r["value"] for r in free_text} == {OTHER_VALUE}
