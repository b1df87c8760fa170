"""The time split: windows in order, no lead on both sides, only uncensored examples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set, uncensored
from features.loading import Export
from training.config import SplitConfig
from training.split import SplitError, split_by_time


@pytest.fixture(scope="module")
def examples(small_export: Export) -> ExampleSet:
    """Every example of the small export, censored ones included."""
    return build_training_set(small_export, FeatureConfig())


def test_windows_follow_each_other_in_time(examples: ExampleSet) -> None:
    split = split_by_time(uncensored(examples), SplitConfig())

    assert split.train.keys["as_of"].max() <= split.validation_start
    assert split.validation.keys["as_of"].min() > split.validation_start
    assert split.validation.keys["as_of"].max() <= split.test_start
    assert split.test.keys["as_of"].min() > split.test_start
    assert split.test_start == split.end - pd.Timedelta(days=180)
    assert split.end == uncensored(examples).keys["as_of"].max()


def test_no_lead_is_on_both_sides_of_a_split(examples: ExampleSet) -> None:
    split = split_by_time(uncensored(examples), SplitConfig())

    leads = [set(part.keys["lead_id"]) for part in split.parts().values()]

    assert not leads[0] & leads[1]
    assert not leads[0] & leads[2]
    assert not leads[1] & leads[2]
    kept = sum(len(part) for part in split.parts().values())
    assert kept + split.dropped_crossover == len(uncensored(examples))


def test_a_lead_belongs_to_the_window_of_its_first_example(examples: ExampleSet) -> None:
    usable = uncensored(examples)
    split = split_by_time(usable, SplitConfig())

    first_seen = usable.keys.groupby("lead_id")["as_of"].min()

    assert (first_seen[list(set(split.test.keys["lead_id"]))] > split.test_start).all()
    assert (first_seen[list(set(split.train.keys["lead_id"]))] <= split.validation_start).all()


def test_censored_examples_are_refused(examples: ExampleSet) -> None:
    assert examples.labels is not None
    assert examples.labels.censored.any()

    with pytest.raises(ValueError, match="uncensored"):
        split_by_time(examples, SplitConfig())


def test_the_embargo_drops_training_examples_next_to_validation(examples: ExampleSet) -> None:
    plain = split_by_time(uncensored(examples), SplitConfig())
    embargoed = split_by_time(uncensored(examples), SplitConfig(embargo_days=90))

    cutoff = embargoed.validation_start - pd.Timedelta(days=90)
    assert embargoed.train.keys["as_of"].max() <= cutoff
    assert len(embargoed.train) + embargoed.dropped_embargo == len(plain.train)
    assert len(embargoed.test) == len(plain.test)


def test_the_validation_embargo_keeps_validation_labels_out_of_the_test_window(
    examples: ExampleSet,
) -> None:
    embargo = pd.Timedelta(days=60)
    plain = split_by_time(uncensored(examples), SplitConfig(validation_days=240))
    strict = split_by_time(
        uncensored(examples), SplitConfig(validation_days=240, validation_embargo_days=60)
    )

    label_ends = strict.validation.keys["as_of"] + embargo  # labels of a 60-day horizon
    assert label_ends.max() <= strict.test_start
    assert len(strict.validation) + strict.dropped_validation_embargo == len(plain.validation)
    assert len(strict.train) == len(plain.train)
    assert len(strict.test) == len(plain.test)
    assert strict.summary()["dropped_validation_embargo"] == strict.dropped_validation_embargo > 0


def test_the_summary_says_how_far_validation_labels_look_past_the_test_start(
    examples: ExampleSet,
) -> None:
    usable = uncensored(examples)
    settings = {"validation_days": 240}
    plain = split_by_time(usable, SplitConfig(**settings), horizon_days=60)
    strict = split_by_time(
        usable, SplitConfig(**settings, validation_embargo_days=60), horizon_days=60
    )

    reach = plain.validation.keys["as_of"].max() + pd.Timedelta(days=60) - plain.test_start
    assert plain.summary()["validation_labels_past_test_start_days"] == round(
        reach / pd.Timedelta(days=1), 1
    )
    assert 59 < plain.summary()["validation_labels_past_test_start_days"] <= 60
    assert strict.summary()["validation_labels_past_test_start_days"] == 0


def test_a_validation_embargo_as_long_as_the_window_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"validation_embargo_days.*validation_days"):
        SplitConfig(validation_embargo_days=180)


def test_windows_too_long_for_the_export_are_a_clear_error(examples: ExampleSet) -> None:
    with pytest.raises(SplitError, match="train window"):
        split_by_time(uncensored(examples), SplitConfig(validation_days=2000))


def test_an_export_without_a_fully_observed_example_says_so(examples: ExampleSet) -> None:
    # Given an export whose every label reaches past its end (a horizon longer than it)
    none_observed = examples.take(np.zeros(len(examples), dtype=bool))
    # When it is split, then the error names the labels' reach, not an empty train window
    with pytest.raises(
        SplitError, match="no example is fully observed: every label, which looks 3650 days"
    ):
        split_by_time(none_observed, SplitConfig(), 3650)


def test_a_window_where_nothing_came_back_says_so(examples: ExampleSet) -> None:
    # Given fully observed examples none of which came back (outcomes not exported)
    observed = uncensored(examples)
    assert observed.labels is not None
    target = np.zeros_like(observed.labels.target)
    no_comeback = replace(observed, labels=replace(observed.labels, target=target))
    # When they are split, then the error says that none came back, and what it may mean
    with pytest.raises(SplitError, match="none of which came back within the horizon"):
        split_by_time(no_comeback, SplitConfig())


def test_the_summary_reports_sizes_and_rates(examples: ExampleSet) -> None:
    summary = split_by_time(uncensored(examples), SplitConfig()).summary()

    assert summary["test"]["examples"] > 0
    assert 0 < summary["train"]["positive_rate"] < 1
    assert np.isfinite(summary["validation"]["positive_rate"])


def test_the_default_embargo_covers_as_far_as_won_labels_look(examples: ExampleSet) -> None:
    """A ``won`` label looks ``horizon + won_close_days`` ahead: the default embargo is that
    long, so no training label is decided in the validation or test windows."""
    won = FeatureConfig(target="won", horizon_days=180, won_close_days=90)
    reconverted = FeatureConfig(horizon_days=180)

    assert (won.label_days, reconverted.label_days) == (270, 180)
    by_label_days = split_by_time(uncensored(examples), SplitConfig(), won.label_days)
    by_explicit = split_by_time(uncensored(examples), SplitConfig(embargo_days=270), 270)
    assert by_label_days.summary() == by_explicit.summary()
    assert by_label_days.dropped_embargo > 0


def test_two_won_models_with_other_deadlines_answer_other_questions() -> None:
    ninety = FeatureConfig(target="won", won_close_days=90)
    longer = FeatureConfig(target="won", won_close_days=180)

    assert ninety.question != longer.question
    assert ninety.question == "won within 365 days (closed won within 90 more)"
    assert FeatureConfig().question == FeatureConfig(won_close_days=90).question
