"""Labels and censoring: unknown outcomes are never negatives and never train or evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.config import FeatureConfig
from features.dataset import build_training_set, uncensored
from features.loading import Export, load_export
from tests.features.conftest import TINY_TABLES, write_tiny_export

DAY = np.timedelta64(1, "D")


def test_tiny_export_examples_labels_and_censoring(tiny_export_dir: Path) -> None:
    # Given the tiny export (snapshot 2025-05-01) and a 180-day horizon
    export = load_export(tiny_export_dir)
    examples = build_training_set(export, FeatureConfig(horizon_days=180))
    keys = examples.keys
    labels = examples.labels
    assert labels is not None
    by_key = {
        (r, int(o)): i
        for i, (r, o) in enumerate(zip(keys["rejection_id"], keys["offset_days"], strict=True))
    }
    # Then R1 (an opportunity 122 days later) is positive until the opportunity closes it
    assert sorted(o for r, o in by_key if r == "R1") == [0, 30, 90]
    assert labels.reconverted[by_key[("R1", 0)]] == 1.0
    assert labels.days_to_reconversion[by_key[("R1", 0)]] == 122.0
    # And R3, rejected on the snapshot day, is censored, never a negative
    assert labels.censored[by_key[("R3", 0)]]
    assert np.isnan(labels.target[by_key[("R3", 0)]])
    # And R2's 365-day re-score lies 30 days before the snapshot: its horizon is unseen
    assert labels.censored[by_key[("R2", 365)]]
    assert not labels.censored[by_key[("R2", 180)]]


def test_censored_examples_never_reach_training_or_evaluation(small_export: Export) -> None:
    config = FeatureConfig()
    examples = build_training_set(small_export, config)
    assert examples.labels is not None
    horizon_end = examples.keys["as_of"] + np.timedelta64(config.horizon_days, "D")
    unseen = (horizon_end > small_export.snapshot_at).to_numpy()

    np.testing.assert_array_equal(examples.labels.censored, unseen)
    assert np.isnan(examples.labels.target[unseen]).all()
    kept = uncensored(examples)
    assert kept.labels is not None
    assert len(kept) == int((~unseen).sum()) > 0
    assert not np.isnan(kept.labels.target).any()
    assert (
        kept.keys["as_of"] + np.timedelta64(config.horizon_days, "D") <= small_export.snapshot_at
    ).all()


def test_rescoring_examples_exist_only_while_the_rejection_is_open(small_export: Export) -> None:
    examples = build_training_set(small_export, FeatureConfig())
    later = examples.keys.loc[examples.keys["offset_days"] > 0]
    opportunities = small_export.opportunities

    for _, row in later.sample(200, random_state=1).iterrows():
        mine = opportunities.loc[opportunities["lead_id"] == row["lead_id"], "created_at"]
        assert not ((mine > row["rejected_at"]) & (mine <= row["as_of"])).any()


def test_rejections_at_the_same_moment_are_neither_earlier_nor_later(tmp_path: Path) -> None:
    rejections = TINY_TABLES["rejections"] + "R0,L1,2024-04-01T00:00:00Z,sql,timing,,,\n"
    directory = write_tiny_export(tmp_path / "ties", {**TINY_TABLES, "rejections": rejections})
    examples = build_training_set(load_export(directory), FeatureConfig(horizon_days=180))
    at_rejection = examples.keys["offset_days"] == 0
    tied = examples.keys["rejection_id"].isin(["R0", "R1"]) & at_rejection

    assert sorted(examples.keys.loc[tied, "rejection_id"]) == ["R0", "R1"]
    assert (examples.features.columns["earlier_rejections"][tied.to_numpy()] == 0).all()


def test_a_later_rejection_closes_both_of_two_tied_rejections(tmp_path: Path) -> None:
    # Given R0 and R1 of lead L1 at the same moment, and R4 of L1 two months later
    rejections = TINY_TABLES["rejections"] + (
        "R0,L1,2024-04-01T00:00:00Z,sql,timing,,,\nR4,L1,2024-06-01T00:00:00Z,sql,timing,,,\n"
    )
    directory = write_tiny_export(tmp_path / "ties", {**TINY_TABLES, "rejections": rejections})
    keys = build_training_set(load_export(directory), FeatureConfig(horizon_days=30)).keys

    # Then each tied rejection is re-scored up to R4 and never after it
    for rejection_id in ("R0", "R1"):
        mine = keys.loc[keys["rejection_id"] == rejection_id, "offset_days"]
        assert sorted(mine) == [0, 30], rejection_id


def test_rows_of_a_set_aside_lead_never_join_another_lead(tmp_path: Path) -> None:
    from features.examples import open_rejection_examples
    from features.history import history_from_export

    leads = TINY_TABLES["leads"].replace("2024-02-01T00:00:00+02:00", "garbled")
    directory = write_tiny_export(tmp_path / "aside", {**TINY_TABLES, "leads": leads})
    export = load_export(directory, lenient=True)
    history = history_from_export(export, FeatureConfig())

    assert history.rejections.rejection_id.tolist() == ["R1", "R3"]
    assert (history.activities.lead >= 0).all()
    examples = open_rejection_examples(history, int(history.rejections.time.max()))
    assert history.rejections.rejection_id[examples.rejection_row].tolist() == ["R3"]
