"""Point-in-time correctness: nothing after as_of reaches a feature; labels only see after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.config import FeatureConfig
from features.contract import ACTIVITY_TYPES, CONSENT_STATUSES, OPPORTUNITY_STATUSES
from features.dataset import ExampleSet, build_training_set
from features.engine import FeatureTable, compute_features
from features.examples import Examples
from features.history import history_from_export
from features.labels import Labels, label_examples
from features.loading import Export, build_export, load_export
from features.synthetic import DEFAULT_END
from tests.features.conftest import TINY_TABLES, write_tiny_export

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def training_set(small_export: Export) -> ExampleSet:
    return build_training_set(small_export, CONFIG)


def sub_export(export: Export, lead_ids: list[str]) -> dict[str, pd.DataFrame]:
    """The raw tables restricted to some leads (copies, safe to mutate)."""
    return {
        name: frame.loc[frame["lead_id"].isin(lead_ids)].reset_index(drop=True).copy()
        for name, frame in export.tables.items()
    }


def features_at(
    tables: dict[str, pd.DataFrame], rejection_id: str, as_of: pd.Timestamp
) -> FeatureTable:
    """Features of one rejection at ``as_of`` computed from the given tables."""
    export = build_export(tables, snapshot_at=as_of)
    history = history_from_export(export, CONFIG)
    row = np.flatnonzero(history.rejections.rejection_id == rejection_id)
    as_of_us = np.array([as_of.value // 1000], dtype=np.int64)
    return compute_features(history, Examples.at(history, row, as_of_us), CONFIG)


def scramble_future(
    tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, rng: np.random.Generator, delete: bool
) -> dict[str, pd.DataFrame]:
    """Delete, or arbitrarily alter, every row (and every field) dated after ``as_of``."""
    later = {
        "activities": "occurred_at",
        "rejections": "rejected_at",
        "opportunities": "created_at",
        "consent": "changed_at",
    }
    changed = dict(tables)
    for name, column in later.items():
        frame = tables[name].copy()
        future = frame[column] > as_of
        if delete:
            changed[name] = frame.loc[~future].reset_index(drop=True)
            continue
        frame.loc[future, column] = _later_times(as_of, int(future.sum()), rng)
        if name == "rejections":  # a lead is rejected only once it exists
            created = frame["lead_id"].map(tables["leads"].set_index("lead_id")["created_at"])
            frame[column] = frame[column].where(frame[column] >= created, created)
        _alter_category(frame, future, name, rng)
        changed[name] = frame
    changed["opportunities"] = _scramble_closures(changed["opportunities"], as_of, rng, delete)
    return changed


def _later_times(as_of: pd.Timestamp, count: int, rng: np.random.Generator) -> pd.Series:
    """Random moments after ``as_of``, up to 400 days later but not after the generated
    export's end (the same on any day: a moment after the machine's clock is refused)."""
    latest = min(as_of + pd.Timedelta(days=400), pd.Timestamp(DEFAULT_END))
    span_us = max((latest - as_of) // pd.Timedelta(microseconds=1), 2)
    offsets = pd.to_timedelta(rng.integers(1, span_us, count), unit="us")
    return pd.Series(as_of + offsets).astype("datetime64[us, UTC]").to_numpy()


def _alter_category(
    frame: pd.DataFrame, future: pd.Series, name: str, rng: np.random.Generator
) -> None:
    vocabularies = {
        "activities": ("activity_type", ACTIVITY_TYPES),
        "consent": ("status", CONSENT_STATUSES),
        "opportunities": ("status", OPPORTUNITY_STATUSES),
    }
    if name in vocabularies and future.any():
        column, vocabulary = vocabularies[name]
        frame.loc[future, column] = rng.choice(vocabulary, int(future.sum()))


def _scramble_closures(
    frame: pd.DataFrame, as_of: pd.Timestamp, rng: np.random.Generator, delete: bool
) -> pd.DataFrame:
    """An opportunity open at as_of may close later with any status and amount."""
    frame = frame.copy()
    closes_later = (frame["created_at"] <= as_of) & (
        frame["closed_at"].isna() | (frame["closed_at"] > as_of)
    )
    count = int(closes_later.sum())
    if count == 0:
        return frame
    if delete:
        frame.loc[closes_later, "closed_at"] = pd.NaT
        frame.loc[closes_later, "status"] = "open"
        return frame
    frame.loc[closes_later, "closed_at"] = _later_times(as_of, count, rng)
    frame.loc[closes_later, "status"] = rng.choice(["won", "lost"], count)
    frame.loc[closes_later, "amount"] = rng.uniform(0, 1e7, count)
    return frame


def assert_same_features(left: FeatureTable, right: FeatureTable) -> None:
    assert left.names == right.names
    for name in left.names:
        a, b = left.columns[name], right.columns[name]
        if a.dtype == object:
            assert a.tolist() == b.tolist(), name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pick=st.integers(min_value=0), seed=st.integers(0, 2**32 - 1), delete=st.booleans())
def test_features_ignore_every_row_after_as_of(
    small_export: Export, training_set: ExampleSet, pick: int, seed: int, delete: bool
) -> None:
    # Given a random example and some other leads around it
    rng = np.random.default_rng(seed)
    keys = training_set.keys.iloc[pick % len(training_set)]
    others = rng.choice(small_export.leads["lead_id"].to_numpy(), 20).tolist()
    tables = sub_export(small_export, [keys["lead_id"], *others])
    # When every row after as_of is deleted or scrambled
    scrambled = scramble_future(tables, keys["as_of"], rng, delete)
    # Then the example's features are identical
    assert_same_features(
        features_at(tables, keys["rejection_id"], keys["as_of"]),
        features_at(scrambled, keys["rejection_id"], keys["as_of"]),
    )


def test_more_recent_activity_after_as_of_is_invisible_but_counts_once_past(
    small_export: Export, training_set: ExampleSet
) -> None:
    # Given an example and a pricing-page visit one second after its as_of
    keys = training_set.keys.iloc[0]
    tables = sub_export(small_export, [keys["lead_id"]])
    visit = pd.DataFrame(
        {
            "activity_id": ["late"],
            "lead_id": [keys["lead_id"]],
            "occurred_at": [keys["as_of"] + pd.Timedelta(seconds=1)],
            "activity_type": ["pricing_page_visit"],
        }
    )
    with_visit = {**tables, "activities": pd.concat([tables["activities"], visit])}
    before = features_at(tables, keys["rejection_id"], keys["as_of"])
    # When scoring at as_of, then one second later
    at_as_of = features_at(with_visit, keys["rejection_id"], keys["as_of"])
    later = features_at(with_visit, keys["rejection_id"], keys["as_of"] + pd.Timedelta(seconds=1))
    # Then the visit is invisible at as_of and counted once it has happened
    assert_same_features(before, at_as_of)
    name = "pricing_page_visit_7d"
    assert later.columns[name][0] == before.columns[name][0] + 1


def test_labels_never_use_rows_at_or_before_as_of(
    small_export: Export, training_set: ExampleSet
) -> None:
    # Given the labels of every example of the export
    history = history_from_export(small_export, CONFIG)
    snapshot = small_export.snapshot_at.value // 1000
    examples = _examples_of(training_set, history)
    labels = label_examples(history, examples, CONFIG, snapshot)
    # When every opportunity is moved to before the first example's as_of... per example
    lead = history.rejections.lead[examples.rejection_row]
    created = history.opportunities_created
    for index in np.flatnonzero(labels.reconverted == 0)[:50]:
        mine = created.lead == lead[index]
        assert not np.any(
            (created.time[mine] > examples.as_of[index])
            & (created.time[mine] <= examples.as_of[index] + CONFIG.horizon_days * 86_400_000_000)
        )
    # Then deleting all opportunities at or before each as_of changes no label
    for index in range(0, len(examples), max(1, len(examples) // 40)):
        moment = training_set.keys["as_of"].iloc[index]
        tables = dict(small_export.tables)
        opportunities = tables["opportunities"]
        tables["opportunities"] = opportunities.loc[opportunities["created_at"] > moment]
        reduced = build_export(tables, snapshot_at=small_export.snapshot_at)
        reduced_history = history_from_export(reduced, CONFIG)
        one = Examples.at(
            reduced_history,
            examples.rejection_row[index : index + 1],
            examples.as_of[index : index + 1],
        )
        again = label_examples(reduced_history, one, CONFIG, snapshot)
        np.testing.assert_equal(again.reconverted[0], labels.reconverted[index])
        np.testing.assert_equal(again.won[0], labels.won[index])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(days_back=st.integers(100, 400), seed=st.integers(0, 2**32 - 1), delete=st.booleans())
def test_labels_ignore_every_row_and_close_after_the_snapshot(
    small_export: Export, days_back: int, seed: int, delete: bool
) -> None:
    # Given a backtest snapshot and leads with opportunities that close after it
    rng = np.random.default_rng(seed)
    snapshot = small_export.snapshot_at - pd.Timedelta(days=days_back)
    tables = sub_export(small_export, leads_closing_after(small_export, snapshot, rng))
    # When every row and every close dated after the snapshot is deleted or scrambled
    scrambled = scramble_future(tables, snapshot, rng, delete)
    before_keys, before = won_labels_at(tables, snapshot)
    after_keys, after = won_labels_at(scrambled, snapshot)
    # Then every example keeps its labels (reconverted and won) and its censoring
    pd.testing.assert_frame_equal(before_keys, after_keys)
    for name in Labels.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)


def leads_closing_after(
    export: Export, snapshot: pd.Timestamp, rng: np.random.Generator
) -> list[str]:
    """Some leads with an opportunity open at ``snapshot`` that closes later, and others."""
    opportunities = export.opportunities
    closes_later = (opportunities["created_at"] <= snapshot) & (
        opportunities["closed_at"] > snapshot
    )
    closing = opportunities.loc[closes_later, "lead_id"].unique()
    others = export.leads["lead_id"].to_numpy()
    return [*rng.choice(closing, 15, replace=False), *rng.choice(others, 15)]


def won_labels_at(
    tables: dict[str, pd.DataFrame], snapshot: pd.Timestamp
) -> tuple[pd.DataFrame, Labels]:
    """Keys and labels (``won`` target) of every training example at the ``snapshot``."""
    export = build_export(tables, snapshot_at=snapshot)
    examples = build_training_set(export, FeatureConfig(target="won"))
    assert examples.labels is not None
    return examples.keys[["rejection_id", "as_of"]], examples.labels


def _examples_of(training_set: ExampleSet, history: object) -> Examples:
    from features.history import History

    assert isinstance(history, History)
    order = {rid: i for i, rid in enumerate(history.rejections.rejection_id)}
    rows = np.array([order[r] for r in training_set.keys["rejection_id"]])
    as_of = (training_set.keys["as_of"].astype("int64") // 1000).to_numpy()
    return Examples.at(history, rows, as_of)


@pytest.mark.parametrize("stored_as", ["csv text", "parquet nanoseconds"])
def test_an_event_a_fraction_of_a_microsecond_after_as_of_is_not_known_at_it(
    tmp_path: Path, stored_as: str
) -> None:
    # Given a pricing-page visit 0.9 µs after the rejection R3 is scored (its as_of)
    late = "A7,L1,2025-05-01T00:00:00.0000009Z,pricing_page_visit\n"
    with_late = {**TINY_TABLES, "activities": TINY_TABLES["activities"] + late}
    plain = build_training_set(load_export(write_tiny_export(tmp_path / "plain")), CONFIG)
    directory = write_tiny_export(tmp_path / "late", with_late)
    if stored_as == "parquet nanoseconds":
        activities = pd.read_csv(directory / "activities.csv")
        activities["occurred_at"] = pd.to_datetime(
            activities["occurred_at"], utc=True, format="ISO8601"
        )
        assert activities["occurred_at"].dt.unit == "ns"
        activities.to_parquet(directory / "activities.parquet", index=False)
        (directory / "activities.csv").unlink()
    export = load_export(directory)

    scored = build_training_set(export, CONFIG)

    # Then the visit is kept one microsecond later, not cut back to as_of, and no feature
    # of R3 (nor of any other example) sees it
    (kept,) = export.activities.loc[export.activities["activity_id"] == "A7", "occurred_at"]
    assert kept == pd.Timestamp("2025-05-01T00:00:00.000001Z")
    assert scored.keys["as_of"].tolist() == plain.keys["as_of"].tolist()
    assert_same_features(plain.features, scored.features)
