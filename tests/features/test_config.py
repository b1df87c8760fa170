"""Feature settings: a custom column may not take a name the example table already uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from features.catalogue import feature_specs
from features.config import FeatureConfig, setting_problems
from features.example_columns import EXAMPLE_KEY_COLUMNS, LABEL_COLUMNS


def _problems(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as refused:
        FeatureConfig.model_validate(data)
    return setting_problems(refused.value)


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@pytest.mark.parametrize(
    ("column", "holder"),
    [
        ("points_score", "a feature the engine already computes"),
        ("consent_status", "a feature the engine already computes"),
        ("pricing_page_visit_30d", "a feature the engine already computes"),
        ("rejection_id", "a key column of the example table"),
        ("as_of", "a key column of the example table"),
        ("offset_days", "a key column of the example table"),
        ("label", "a label column of the example table"),
        ("won", "a label column of the example table"),
        ("days_to_reconversion", "a label column of the example table"),
    ],
)
def test_a_custom_column_named_like_a_column_of_the_example_table_is_refused(
    kind: str, column: str, holder: str
) -> None:
    # Given a custom column that takes a name the engine or the example table already uses
    # When the settings are validated
    problems = _problems({"custom_columns": {kind: ["crm_plan_tier", column]}})
    # Then the setting and the column are named, and nothing else is refused
    assert problems == f"custom_columns.{kind}: {column!r} is {holder}"


def test_every_name_of_the_example_table_is_reserved() -> None:
    engine = [spec.name for spec in feature_specs(FeatureConfig())]
    reserved = (*EXAMPLE_KEY_COLUMNS, *LABEL_COLUMNS, *engine)

    for name in reserved:
        assert name in _problems({"custom_columns": {"numeric": [name]}})


def test_the_engine_names_follow_the_configured_windows() -> None:
    # Given a custom column named like a count over a 14-day window
    column = {"custom_columns": {"numeric": ["pricing_page_visit_14d"]}}
    # When the engine counts 7-day windows, the name is free; with 14-day windows it is not
    assert FeatureConfig.model_validate(column).custom_columns.numeric == (
        "pricing_page_visit_14d",
    )
    problems = _problems({**column, "windows_days": [14, 90]})
    assert problems == (
        "custom_columns.numeric: 'pricing_page_visit_14d' is a feature the engine already computes"
    )


def test_every_clash_is_named_at_once() -> None:
    problems = _problems(
        {"custom_columns": {"numeric": ["points_score"], "categorical": ["won", "crm_plan"]}}
    )

    assert problems == (
        "custom_columns.numeric: 'points_score' is a feature the engine already computes; "
        "custom_columns.categorical: 'won' is a label column of the example table"
    )


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_custom_column_declared_twice_is_refused(kind: str) -> None:
    problems = _problems({"custom_columns": {kind: ["crm_plan", "crm_plan"]}})

    assert "columns declared more than once: ['crm_plan']" in problems


def test_distinct_custom_columns_are_features() -> None:
    config = FeatureConfig.model_validate(
        {"custom_columns": {"numeric": ["crm_score"], "categorical": ["crm_plan"]}}
    )

    names = [spec.name for spec in feature_specs(config)]
    assert {"crm_score", "crm_plan"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("days", [-1, 3651])
def test_won_close_days_outside_its_range_is_refused(days: int) -> None:
    problems = _problems({"target": "won", "won_close_days": days})

    assert problems.startswith("won_close_days: Input should be")


def test_won_close_days_defaults_to_a_sales_cycle_and_may_be_zero() -> None:
    assert FeatureConfig().won_close_days == 180
    assert FeatureConfig.model_validate({"won_close_days": 0}).won_close_days == 0
