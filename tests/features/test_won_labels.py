"""The ``won`` label: closed won by a deadline after the horizon, censored on time alone.

The tiny export's R1 (lead L1) is rejected on 2024-04-01; its O1 is created 122 days later.
With a 180-day horizon and ``won_close_days`` 30, R1's won deadline (scored at rejection)
is 2024-10-28; the export's own snapshot is 2025-05-01.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.config import FeatureConfig
from features.contract import OPPORTUNITY_STATUSES
from features.dataset import build_training_set
from features.examples import training_examples
from features.history import DAY_US, history_from_export
from features.labels import Labels, label_examples
from features.loading import Export, build_export, load_export
from features.timestamps import microseconds
from tests.features.conftest import TINY_TABLES, write_tiny_export

CONFIG = FeatureConfig(horizon_days=180, won_close_days=30, target="won")
R1_REJECTED = pd.Timestamp("2024-04-01", tz="UTC")
HORIZON_END = R1_REJECTED + pd.Timedelta(days=180)
DEADLINE = R1_REJECTED + pd.Timedelta(days=180 + 30)
MICROSECOND = pd.Timedelta(microseconds=1)


def tiny_export_with_o1(tmp_path: Path, status: str | None, closed_at: str = "") -> Path:
    """The tiny export whose O1 (created 2024-08-01) has this status and close (none: no O1)."""
    header = TINY_TABLES["opportunities"].splitlines()[0]
    row = f"O1,L1,2024-08-01T00:00:00Z,{closed_at},{status},5000\n" if status else ""
    tables = {**TINY_TABLES, "opportunities": f"{header}\n{row}"}
    return write_tiny_export(tmp_path / "o1", tables)


def r1_labels(
    directory: Path, config: FeatureConfig = CONFIG, snapshot_at: pd.Timestamp | None = None
) -> dict[str, float]:
    """R1's labels scored at its rejection (``won`` target), at the given snapshot."""
    examples = build_training_set(load_export(directory, snapshot_at=snapshot_at), config)
    assert examples.labels is not None
    keys = examples.keys
    (row,) = np.flatnonzero((keys["rejection_id"] == "R1") & (keys["offset_days"] == 0))
    labels = examples.labels
    return {
        "reconverted": labels.reconverted[row],
        "won": labels.won[row],
        "censored": labels.censored[row],
    }


@pytest.mark.parametrize(
    ("closed_at", "won"), [(DEADLINE, 1.0), (DEADLINE + MICROSECOND, 0.0)], ids=["at", "after"]
)
def test_a_won_close_counts_up_to_the_deadline_and_not_a_microsecond_after(
    tmp_path: Path, closed_at: pd.Timestamp, won: float
) -> None:
    # Given O1 in R1's window, closed won exactly at R1's won deadline or 1 µs after it
    directory = tiny_export_with_o1(tmp_path, "won", closed_at.isoformat())
    # When labelling at the export's snapshot, long after the deadline
    labels = r1_labels(directory)
    # Then the win counts only at or before the deadline; either way the label is known
    assert labels == {"reconverted": 1.0, "won": won, "censored": False}


@pytest.mark.parametrize(
    ("status", "closed_at", "won"),
    [
        ("won", "2024-10-01T00:00:00Z", 1.0),
        ("lost", "2024-10-01T00:00:00Z", 0.0),
        ("open", "", 0.0),
        (None, "", 0.0),
    ],
    ids=["won", "lost", "open", "no-opportunity"],
)
def test_won_is_known_from_the_snapshot_at_its_deadline_and_unknown_a_microsecond_before(
    tmp_path: Path, status: str | None, closed_at: str, won: float
) -> None:
    # Given R1 with O1 won, lost, still open, or no opportunity at all
    directory = tiny_export_with_o1(tmp_path, status, closed_at)
    # When the snapshot is exactly R1's won deadline, then 1 µs before it
    at_deadline = r1_labels(directory, snapshot_at=DEADLINE)
    before = r1_labels(directory, snapshot_at=DEADLINE - MICROSECOND)
    # Then at the deadline won is known, whatever the deal's status
    assert at_deadline["won"] == won
    assert not at_deadline["censored"]
    # And 1 µs before it won is unknown and censored, whatever the deal's status, while the
    # horizon itself (ended a month earlier) is observed
    assert np.isnan(before["won"])
    assert before["censored"]
    assert before["reconverted"] == (0.0 if status is None else 1.0)


@pytest.mark.parametrize("closed_at", ["", "2025-09-01T00:00:00Z"], ids=["no-date", "planned"])
def test_an_opportunity_still_open_at_a_past_deadline_is_a_negative(
    tmp_path: Path, closed_at: str
) -> None:
    # Given O1 still open at the export's snapshot (no close date, or a planned one after it)
    directory = tiny_export_with_o1(tmp_path, "open", closed_at)
    # When labelling at the snapshot, six months after R1's won deadline
    labels = r1_labels(directory)
    # Then R1 came back but did not win by its deadline: a negative, not censored
    assert labels == {"reconverted": 1.0, "won": 0.0, "censored": False}


@pytest.mark.parametrize(
    ("won_close_days", "expected"),
    [(30, {"won": 0.0, "censored": False}), (3650, {"won": np.nan, "censored": True})],
    ids=["deadline-before-snapshot", "deadline-after-snapshot"],
)
def test_a_won_close_after_the_snapshot_never_counts(
    tmp_path: Path, won_close_days: int, expected: dict[str, object]
) -> None:
    # Given O1 closed won a month after the export's snapshot (2025-05-01)
    directory = tiny_export_with_o1(tmp_path, "won", "2025-06-01T00:00:00Z")
    config = CONFIG.model_copy(update={"won_close_days": won_close_days})
    # When labelling at the snapshot
    labels = r1_labels(directory, config)
    # Then the win never counts: a negative when the deadline has passed, else censored
    assert labels["reconverted"] == 1.0
    np.testing.assert_equal(labels["won"], expected["won"])
    assert labels["censored"] == expected["censored"]


def test_won_is_a_subset_of_reconverted_and_the_target_where_known(small_export: Export) -> None:
    examples = build_training_set(small_export, FeatureConfig(target="won"))
    assert examples.labels is not None
    labels = examples.labels

    known = ~np.isnan(labels.won)
    assert not np.isnan(labels.reconverted[known]).any()
    assert (labels.won[known] <= labels.reconverted[known]).all()
    np.testing.assert_array_equal(labels.censored, ~known)
    np.testing.assert_array_equal(labels.target, labels.won)
    assert 0 < np.nansum(labels.won) < known.sum()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    horizon_days=st.integers(30, 400),
    won_close_days=st.integers(0, 365),
)
def test_won_censoring_depends_only_on_time_never_on_an_outcome(
    small_export: Export, seed: int, horizon_days: int, won_close_days: int
) -> None:
    # Given the won target with some horizon and won deadline
    config = FeatureConfig(horizon_days=horizon_days, won_close_days=won_close_days, target="won")
    # When every opportunity's status and close are redrawn at random (open, won or lost,
    # closed before or after the snapshot, or never)
    tables = dict(small_export.tables)
    tables["opportunities"] = redraw_outcomes(tables["opportunities"], seed)
    redrawn = build_export(tables, snapshot_at=small_export.snapshot_at)
    as_of, before = won_labels(small_export, config)
    as_of_again, after = won_labels(redrawn, config)
    # Then the same examples are censored, exactly those whose won deadline is past the
    # snapshot, and reconverted is untouched
    np.testing.assert_array_equal(as_of, as_of_again)
    deadline = as_of + (horizon_days + won_close_days) * DAY_US
    snapshot = microseconds(small_export.snapshot_at.to_pydatetime())
    np.testing.assert_array_equal(before.censored, deadline > snapshot)
    np.testing.assert_array_equal(after.censored, before.censored)
    np.testing.assert_array_equal(after.reconverted, before.reconverted)


def redraw_outcomes(opportunities: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The opportunities with random statuses and closes (some after the snapshot, some none)."""
    rng = np.random.default_rng(seed)
    frame = opportunities.copy()
    count = len(frame)
    frame["status"] = rng.choice(OPPORTUNITY_STATUSES, count)
    delay = pd.to_timedelta(rng.integers(0, 900 * 86_400, count), unit="s")
    closes = frame["created_at"] + delay
    frame["closed_at"] = closes.where(rng.random(count) < 0.8, pd.NaT)
    return frame


def won_labels(export: Export, config: FeatureConfig) -> tuple[np.ndarray, Labels]:
    """Each training example's ``as_of`` (µs) and labels, without computing features."""
    history = history_from_export(export, config)
    snapshot = microseconds(export.snapshot_at.to_pydatetime())
    examples = training_examples(history, config, snapshot)
    return examples.as_of, label_examples(history, examples, config, snapshot)
