"""Capacity, thresholds and policy tuning over scored historical examples.

Hand-made frames check the arithmetic; the real model of tests/serving/conftest.py, trained
on the small generated export, checks the replay through the shared scoring path and the
tuned policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import NO_CONTACT_REASONS
from features.dataset import ExampleSet, build_training_set
from features.loading import Export, build_export
from features.predictor import ReconversionModel
from serving import capacity, policy_tuning
from serving.capacity import Capacity, ScoredHistory
from serving.policy import RoutingPolicy, load_policy
from serving.routing import RoutingInputs, route


def _frame(rows: list[tuple[str, float, float, bool]]) -> pd.DataFrame:
    """Rows of (month, probability, outcome, suppressed)."""
    frame = pd.DataFrame(rows, columns=["month", "probability", "outcome", "suppressed"])
    frame["month"] = pd.to_datetime(frame["month"])
    frame["points_score"] = frame["probability"][::-1].to_numpy()
    return frame


HAND = _frame(
    [
        ("2025-01-01", 0.9, 1, False),
        ("2025-01-01", 0.7, 0, False),
        ("2025-01-01", 0.5, 1, False),
        ("2025-01-01", 0.1, 0, False),
        ("2025-01-01", 0.95, 1, True),
        ("2025-03-01", 0.8, 0, False),
        ("2025-03-01", 0.6, 1, False),
        ("2025-03-01", 0.2, 0, False),
    ]
)


@pytest.fixture(scope="module")
def policy() -> RoutingPolicy:
    """The packaged default routing policy."""
    return load_policy()


@pytest.fixture(scope="module")
def history(
    model: ReconversionModel,
    training_examples: ExampleSet,
    policy: RoutingPolicy,
    small_export: Export,
) -> ScoredHistory:
    """The small export's uncensored examples scored at rejection and routed, their
    re-scorings 30 and 90 days on consulted for returns to sales (as ``replay`` does)."""
    at_rejection = training_examples.take((training_examples.keys["offset_days"] == 0).to_numpy())
    every = build_training_set(
        small_export, model.config
    )  # a later moment's outcome may be unknown
    later = every.take(every.keys["offset_days"].isin(capacity.REBOUND_CHECKS_DAYS).to_numpy())
    return capacity.score_history(model, at_rejection, policy, small_export, later)


def test_a_rejection_counts_in_sales_when_a_re_scoring_sends_it_back(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    # Scored at its rejection, no lead has intent after it: only a due follow-up goes back
    assert history.rescores is not None
    alone = ScoredHistory(history.frame, history.inputs)
    at_rejection = capacity.reroute(alone, policy).frame["program"] == "rebound_to_sales"
    later = route(history.rescores.inputs, policy).program == "rebound_to_sales"
    returned = np.zeros(len(history.frame), dtype=bool)
    returned[history.rescores.owner[later]] = True
    returned &= ~history.frame["suppressed"].to_numpy(dtype=bool)

    in_sales = history.frame["program"] == "rebound_to_sales"

    assert returned.any()
    assert (in_sales.to_numpy() == (at_rejection.to_numpy() | returned)).all()
    assert (history.frame.loc[in_sales, "priority"] == 1).all()
    # Each rejection counts once, in the month it was rejected
    assert history.frame["rejection_id"].is_unique
    assert (history.frame["offset_days"] == 0).all()
    # And a subset keeps its own rejections' later moments only
    half = history.take(np.arange(len(history.frame)) % 2 == 0)
    assert half.rescores is not None
    kept = set(half.frame["rejection_id"])
    assert set(half.frame["rejection_id"].to_numpy()[half.rescores.owner]) <= kept


def test_the_replay_suppresses_what_the_api_would_have_at_as_of_and_reads_no_later_row(
    model: ReconversionModel, policy: RoutingPolicy, small_export: Export
) -> None:
    # Given two leads without consent rows: one asked not to be contacted in a rejection 10
    # days before its scored rejection, the other only 10 days after its was scored
    rejections = small_export.tables["rejections"]
    no_consent = ~rejections["lead_id"].isin(small_export.tables["consent"]["lead_id"])
    routed = rejections[~rejections["reason_code"].isin(NO_CONTACT_REASONS) & no_consent]
    before, after = routed.iloc[0], routed.iloc[1]
    asked = pd.DataFrame(
        {
            **{c: [None, None] for c in rejections.columns},
            "rejection_id": ["DNC-BEFORE", "DNC-AFTER"],
            "lead_id": [before["lead_id"], after["lead_id"]],
            "rejected_at": [
                before["rejected_at"] - pd.Timedelta(days=10),
                after["rejected_at"] + pd.Timedelta(days=10),
            ],
            "stage_at_rejection": ["mql", "mql"],
            "reason_code": ["do_not_contact", "do_not_contact"],
        }
    ).astype(rejections.dtypes.to_dict())
    export = build_export({**small_export.tables, "rejections": pd.concat([rejections, asked])})
    examples = build_training_set(export, model.config)
    scored = examples.take(
        examples.keys["rejection_id"]
        .isin([before["rejection_id"], after["rejection_id"]])
        .to_numpy()
        & (examples.keys["offset_days"] == 0).to_numpy()
    )
    # When the two rejections are replayed as scored at their rejection
    replayed = capacity.score_history(model, scored, policy, export).frame.set_index("rejection_id")
    # Then the standing request suppresses the first, as the API would have; the later one
    # was not yet known, so the second is routed
    assert bool(replayed.loc[before["rejection_id"], "suppressed"]) is True
    assert bool(replayed.loc[after["rejection_id"], "suppressed"]) is False


def test_capacity_buckets_take_each_months_best_leads_up_to_capacity() -> None:
    buckets = capacity.capacity_buckets(HAND, Capacity(1, 2), "probability")

    assert buckets.tolist() == [
        "sales", "nurture", "nurture", "low_touch", "suppressed", "sales", "nurture", "nurture",
    ]  # fmt: skip


def test_bucket_summary_counts_every_lead_and_comeback_once() -> None:
    buckets = capacity.capacity_buckets(HAND, Capacity(1, 1), "probability")

    summary = capacity.bucket_summary(HAND, buckets)

    assert summary["leads"].to_dict() == {"sales": 2, "nurture": 2, "low_touch": 3, "suppressed": 1}
    assert summary["comebacks"].to_dict() == {
        "sales": 1, "nurture": 1, "low_touch": 1, "suppressed": 1
    }  # fmt: skip
    assert summary.loc["sales", "per_month"] == pytest.approx(2 / 3)  # January to March
    assert summary["share_of_comebacks"].sum() == pytest.approx(1.0)


def test_threshold_table_volumes_and_captures() -> None:
    table = capacity.threshold_table(HAND, [0.0, 0.55, 0.85], Capacity(1, 1))

    assert table.loc[0.0, "capture_rate"] == 1.0
    assert table.loc[0.55].to_dict() == pytest.approx(
        {
            "per_month": 4 / 3,
            "peak_month": 2,
            "comebacks": 2,
            "capture_rate": 2 / 3,
            "precision": 0.5,
            "fits_sales": False,
            "fits_sales_and_nurture": True,
        }
    )
    assert table.loc[0.85, "comebacks"] == 1  # the suppressed 0.95 is never handed over
    assert table["per_month"].is_monotonic_decreasing


def test_random_choice_expects_capacity_share_of_each_months_comebacks() -> None:
    history = ScoredHistory(HAND, _inputs(len(HAND)))

    row = capacity.compare_policies(history, Capacity(1, 1), {}).loc["at random (expected)"]

    # January: 4 open leads, 2 comebacks; March: 3 open leads, 1 comeback
    assert row["sales_comebacks"] == pytest.approx(2 / 4 + 1 / 3)
    assert row["nurture_comebacks"] == pytest.approx(2 / 4 + 1 / 3)
    assert row["suppressed_comebacks"] == 1
    assert row["sales_per_month"] == pytest.approx(2 / 3)


def _inputs(n: int) -> RoutingInputs:
    """Routing inputs that compare_policies needs only for named policies (none here)."""
    empty = np.zeros(n)
    return RoutingInputs(*(empty for _ in RoutingInputs.__dataclass_fields__))


def test_history_is_scored_and_routed_by_the_shared_path(
    history: ScoredHistory,
    model: ReconversionModel,
    training_examples: ExampleSet,
    policy: RoutingPolicy,
) -> None:
    at_rejection = training_examples.take((training_examples.keys["offset_days"] == 0).to_numpy())
    routes = route(history.inputs, policy)

    np.testing.assert_array_equal(history.frame["probability"], model.predict_set(at_rejection))
    # (a re-scoring may send a rejection back to sales since: tested below)
    stayed = (history.frame["program"] != "rebound_to_sales").to_numpy()
    np.testing.assert_array_equal(history.frame["program"][stayed], routes.program[stayed])
    assert at_rejection.labels is not None
    np.testing.assert_array_equal(history.frame["outcome"], at_rejection.labels.target)
    assert (history.frame["month"] == history.frame["as_of"].dt.strftime("%Y-%m-01")).all()


def test_model_ranking_beats_chance_within_the_same_capacity(history: ScoredHistory) -> None:
    table = capacity.compare_policies(history, Capacity(5, 10), {})

    model, chance = table.loc["model ranking"], table.loc["at random (expected)"]
    assert model["sales_per_month"] == pytest.approx(chance["sales_per_month"])
    assert model["sales_comebacks"] > 2 * chance["sales_comebacks"]
    assert model["captured"] > chance["captured"]


def test_in_period_keeps_whole_calendar_months(history: ScoredHistory) -> None:
    quarter = capacity.in_period(history, 3, end=pd.Timestamp("2025-06-29T23:00:00Z"))

    as_of = quarter.frame["as_of"]
    assert as_of.min() >= pd.Timestamp("2025-03-01", tz="UTC")
    assert as_of.max() < pd.Timestamp("2025-06-01", tz="UTC")
    expected = (history.frame["as_of"] >= pd.Timestamp("2025-03-01", tz="UTC")) & (
        history.frame["as_of"] < pd.Timestamp("2025-06-01", tz="UTC")
    )
    assert len(quarter.frame) == int(expected.sum()) > 0
    assert len(quarter.inputs.probability) == len(quarter.frame)
    assert sorted(quarter.frame["month"].dt.month.unique()) == [3, 4, 5]


def test_tuned_policy_fits_capacity_and_is_the_loosest_that_does(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    room = Capacity(sales_per_month=3, nurture_per_month=6)

    tuned = policy_tuning.tune_policy(policy, history, room, name="tuned")

    volumes = capacity.monthly_buckets(history, tuned).mean()
    assert volumes["sales"] <= room.sales_per_month
    assert volumes["nurture"] <= room.nurture_per_month
    # Each threshold is the loosest that fits: one grid step lower overflows its bucket
    # (the rebound threshold, when the low-touch one holds it up, cannot go lower at all)
    low_touch = tuned.low_touch.max_probability
    looser_low_touch = round(low_touch - 0.01, 2)
    if looser_low_touch >= capacity.DEFAULT_GRID[0]:
        relaxed = _with_thresholds(tuned, low_touch=looser_low_touch)
        assert capacity.monthly_buckets(history, relaxed).mean()["nurture"] > room.nurture_per_month
    looser = round(tuned.rebound.min_probability - 0.01, 2)
    if looser >= max(capacity.DEFAULT_GRID[0], low_touch):
        relaxed = _with_thresholds(tuned, rebound=looser, ratio=_due_ratio(policy))
        assert capacity.monthly_buckets(history, relaxed).mean()["sales"] > room.sales_per_month
    assert (tuned.version, tuned.name) == (policy.version + 1, "tuned")
    assert tuned.suppression == policy.suppression
    assert tuned.reasons == policy.reasons
    assert tuned.low_touch.max_probability <= tuned.rebound.min_probability


def _due_ratio(policy: RoutingPolicy) -> float:
    return policy.rebound.follow_up_due_min_probability / policy.rebound.min_probability


def _with_thresholds(
    policy: RoutingPolicy,
    *,
    low_touch: float | None = None,
    rebound: float | None = None,
    ratio: float = 1.0,
) -> RoutingPolicy:
    """``policy`` with its low-touch or rebound threshold moved (the due one kept in ratio)."""
    document = policy.model_dump()
    if low_touch is not None:
        document["low_touch"] |= {"max_probability": low_touch}
    if rebound is not None:
        document["rebound"] |= {
            "min_probability": rebound,
            "follow_up_due_min_probability": round(rebound * ratio, 4),
        }
    return RoutingPolicy.model_validate(document)


def test_a_nurture_capacity_below_the_sales_threshold_raises_it_with_the_low_touch_one(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    # Given room for every sales lead but few nurture ones
    roomy_sales = policy_tuning.tune_policy(policy, history, capacity.Capacity(1000, 1000))
    tight = policy_tuning.tune_policy(policy, history, capacity.Capacity(1000, 4))

    # Then the low-touch threshold rises past where sales alone would have put the rebound
    # one, and takes it along: no score good enough for sales is sent to low touch
    assert tight.low_touch.max_probability > roomy_sales.rebound.min_probability
    assert tight.rebound.min_probability == tight.low_touch.max_probability
    assert capacity.monthly_buckets(history, tight).mean()["nurture"] <= 4


def test_no_suppressed_lead_reaches_sales_or_nurture_under_a_tuned_policy(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    generous = policy_tuning.tune_policy(policy, history, Capacity(1000, 1000))

    frame = capacity.reroute(history, generous).frame
    buckets = capacity.policy_buckets(frame, generous)
    no_contact = frame["reason_code"].isin(["do_not_contact", "bad_data"])
    assert no_contact.any()
    assert (buckets[no_contact] == "suppressed").all()
    assert (frame.loc[frame["suppressed"], "program"] == "suppressed").all()


def test_program_split_shares_add_up(history: ScoredHistory) -> None:
    table = capacity.program_split(history.frame)

    assert table["leads"].sum() == len(history.frame)
    assert table["share"].sum() == pytest.approx(1.0)
    assert table["comebacks"].sum() == history.frame["outcome"].sum()


def test_written_policy_loads_back_unchanged(
    history: ScoredHistory, policy: RoutingPolicy, tmp_path: Path
) -> None:
    tuned = policy_tuning.tune_policy(policy, history, Capacity(4, 8), name="tuned-for-test")

    loaded = policy_tuning.write_policy(tuned, tmp_path / "policy.yaml", comment="capacity 4 / 8")

    assert loaded == tuned
    assert load_policy(tmp_path / "policy.yaml") == tuned
    text = (tmp_path / "policy.yaml").read_text(encoding="utf-8")
    assert "# capacity 4 / 8" in text
    assert not list(tmp_path.glob("*.partial"))


def test_the_default_policy_round_trips_through_yaml(policy: RoutingPolicy, tmp_path: Path) -> None:
    path = tmp_path / "default.yaml"
    path.write_text(policy_tuning.policy_yaml(policy), encoding="utf-8")

    assert load_policy(path) == policy


def test_evaluation_period_is_the_whole_months_of_the_models_test_window(
    history: ScoredHistory,
) -> None:
    metadata = {"test_window": {"start": "2024-12-31T21:00:00+00:00", "end": "2025-06-29T21:00:00"}}

    period = capacity.evaluation_period(history, metadata)
    fallback = capacity.evaluation_period(history, {}, fallback_months=4)

    assert sorted(period.frame["month"].dt.month.unique()) == [1, 2, 3, 4, 5]
    assert period.frame["month"].dt.year.unique().tolist() == [2025]
    assert period.frame["outcome"].notna().all()
    known = history.frame[history.frame["outcome"].notna()]
    assert fallback.frame["month"].nunique() == 4
    assert fallback.frame["as_of"].max() < known["as_of"].max()


def test_compare_policies_without_rankings(history: ScoredHistory, policy: RoutingPolicy) -> None:
    table = capacity.compare_policies(history, Capacity(5, 10), {"default": policy}, scores={})

    assert list(table.index) == ["default", "at random (expected)"]
    assert table.loc["default", "captured"] + table.loc["default", "low_touch_comebacks"] + (
        table.loc["default", "suppressed_comebacks"]
    ) == pytest.approx(history.frame["outcome"].sum())


def test_replay_scores_every_rejection_at_the_offsets_asked_for(
    model: ReconversionModel, small_export: Export, policy: RoutingPolicy, history: ScoredHistory
) -> None:
    # Given the small export and a model built with the default offsets
    # When its rejections are replayed at rejection, and at rejection and 30 days on
    once = capacity.replay(model, small_export, policy)
    twice = capacity.replay(model, small_export, policy, offsets=(0, 30))
    # Then the examples of known outcome at rejection are scored as score_history scores
    # them, re-scorings consulted; censored examples are kept too (their outcome unknown)
    frame = once.frame
    assert frame["outcome"].isna().any()
    known = frame[frame["outcome"].notna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(known, history.frame)
    # And with two offsets both are kept, each row counting for its own moment alone
    assert sorted(twice.frame["offset_days"].unique()) == [0, 30]
    assert len(twice.inputs.probability) == len(twice.frame)
    assert twice.rescores is None


@pytest.mark.parametrize("offsets", [(45,), (0, 45), ()])
def test_replay_refuses_offsets_the_model_builds_no_examples_at(
    model: ReconversionModel, small_export: Export, policy: RoutingPolicy, offsets: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match=r"builds examples at \[0, 30, 90, 180, 365\] days"):
        capacity.replay(model, small_export, policy, offsets=offsets)


def test_parse_statistic_reads_mean_and_max_and_names_a_wrong_value() -> None:
    assert capacity.parse_statistic("mean") == "mean"
    assert capacity.parse_statistic(" MAX ") == "max"
    with pytest.raises(ValueError, match=r"'median': expected mean \(the average month\) or max"):
        capacity.parse_statistic("median")
    with pytest.raises(ValueError, match="'median'"):
        capacity.monthly_load(pd.Series([1.0, 3.0]), "median")  # type: ignore[arg-type]


def test_monthly_load_is_the_average_or_the_busiest_month() -> None:
    volumes = pd.Series([8, 8, 13])

    assert capacity.monthly_load(volumes, "mean") == pytest.approx(29 / 3)
    assert capacity.monthly_load(volumes, "max") == 13


def test_threshold_table_fits_the_chosen_statistic() -> None:
    # Given a threshold handing 2, 0 and 2 leads to sales in January, February and March
    room = Capacity(1.5, 0)
    # When the table judges the average month and the busiest month
    by_mean = capacity.threshold_table(HAND, [0.55], room, statistic="mean")
    by_max = capacity.threshold_table(HAND, [0.55], room, statistic="max")
    # Then 4/3 a month fits on average, but the busiest month's 2 do not
    assert bool(by_mean.loc[0.55, "fits_sales"]) is True
    assert bool(by_max.loc[0.55, "fits_sales"]) is False
    assert by_max.loc[0.55, "peak_month"] == 2


def test_tuned_for_the_busiest_month_fits_every_month(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    # Given a capacity the busiest month can fit (leads showing recent intent or a due
    # follow-up go to sales at any threshold)
    room = Capacity(sales_per_month=6, nurture_per_month=12)
    # When the policy is tuned to the busiest month and to the average month
    busiest = policy_tuning.tune_policy(policy, history, room, statistic="max")
    average = policy_tuning.tune_policy(policy, history, room, statistic="mean")

    # Then every month fits under the first; some month goes over under the second
    peaks = capacity.monthly_buckets(history, busiest).max()
    assert peaks["sales"] <= room.sales_per_month
    assert peaks["nurture"] <= room.nurture_per_month
    assert capacity.monthly_buckets(history, average).max()["sales"] > room.sales_per_month
    assert busiest.rebound.min_probability > average.rebound.min_probability


def test_tune_policy_refuses_an_unknown_statistic(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    with pytest.raises(ValueError, match="'median': expected mean or max"):
        policy_tuning.tune_policy(policy, history, Capacity(3, 6), statistic="median")  # type: ignore[arg-type]


def test_threshold_changes_show_the_tuned_thresholds_before_and_after(
    history: ScoredHistory, policy: RoutingPolicy
) -> None:
    tuned = policy_tuning.tune_policy(policy, history, Capacity(3, 6), name="tuned")

    table = policy_tuning.threshold_changes(policy, tuned)

    assert list(table.index) == list(policy_tuning.TUNED_THRESHOLDS)
    assert list(table.columns) == [policy.label, tuned.label]
    assert table[policy.label].tolist() == [
        policy.rebound.min_probability,
        policy.rebound.follow_up_due_min_probability,
        policy.low_touch.max_probability,
    ]
    assert table.loc["rebound.min_probability", tuned.label] == tuned.rebound.min_probability
    assert table.loc["low_touch.max_probability", tuned.label] == tuned.low_touch.max_probability


def test_capacity_note_says_which_month_fits() -> None:
    assert policy_tuning.capacity_note(Capacity(10, 25), "mean") == (
        "10 sales and 25 nurture leads a month, in the average month"
    )
    assert policy_tuning.capacity_note(Capacity(7.5, 20), "max") == (
        "7.5 sales and 20 nurture leads a month, in the busiest month"
    )
