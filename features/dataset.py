"""Training and scoring tables from a whole export, built in chunks of leads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import REASON_CODES
from features.engine import FeatureTable, compute_features
from features.example_columns import EXAMPLE_KEY_COLUMNS
from features.examples import Examples, open_rejection_examples, training_examples
from features.history import History, history_from_export
from features.labels import Labels, label_examples
from features.loading import Export
from features.timestamps import microseconds

DEFAULT_CHUNK_LEADS = 50_000


@dataclass
class ExampleSet:
    """Examples with their keys, raw features and labels.

    Attributes:
        keys: ``rejection_id``, ``lead_id``, ``as_of`` (UTC), ``offset_days``,
            ``rejected_at`` and ``reason_code`` per example.
        features: the raw feature columns.
        labels: outcomes (None when the set is built for scoring).
    """

    keys: pd.DataFrame
    features: FeatureTable
    labels: Labels | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, mask: np.ndarray) -> ExampleSet:
        """The examples selected by a boolean mask or index array."""
        features = self.features.take(mask)
        labels = None
        if self.labels is not None:
            labels = Labels(*(getattr(self.labels, f)[mask] for f in Labels.__dataclass_fields__))
        return ExampleSet(self.keys.loc[mask].reset_index(drop=True), features, labels)


def build_training_set(
    export: Export, config: FeatureConfig, chunk_leads: int = DEFAULT_CHUNK_LEADS
) -> ExampleSet:
    """Every training example of the export with features and labels (censored included).

    Censored examples stay in the set, flagged in ``labels.censored``, so they can be
    counted and reported; ``uncensored`` drops them before any training or evaluation.
    """
    snapshot = microseconds(export.snapshot_at)

    def select(history: History) -> Examples:
        return training_examples(history, config, snapshot)

    return _build(export, config, select, chunk_leads, snapshot)


def build_scoring_set(
    export: Export,
    config: FeatureConfig,
    as_of: pd.Timestamp | None = None,
    chunk_leads: int = DEFAULT_CHUNK_LEADS,
) -> ExampleSet:
    """Every rejection open at ``as_of`` (default: the snapshot) with its features."""
    moment = microseconds(as_of if as_of is not None else export.snapshot_at)

    def select(history: History) -> Examples:
        return open_rejection_examples(history, moment)

    return _build(export, config, select, chunk_leads, None)


def uncensored(examples: ExampleSet) -> ExampleSet:
    """Only the examples whose label is fully observed."""
    if examples.labels is None:
        raise ValueError("examples have no labels")
    return examples.take(~examples.labels.censored)


def iter_lead_chunks(history: History, chunk_leads: int) -> Iterator[History]:
    """The history split into consecutive chunks of at most ``chunk_leads`` leads."""
    for first in range(0, max(history.n_leads, 1), chunk_leads):
        yield history.between_leads(first, min(first + chunk_leads, history.n_leads))


def _build(
    export: Export,
    config: FeatureConfig,
    select: Callable[[History], Examples],
    chunk_leads: int,
    snapshot: int | None,
) -> ExampleSet:
    history = history_from_export(export, config)
    parts: list[ExampleSet] = []
    for chunk in iter_lead_chunks(history, chunk_leads):
        examples = select(chunk)
        features = compute_features(chunk, examples, config)
        labels = None if snapshot is None else label_examples(chunk, examples, config, snapshot)
        parts.append(ExampleSet(example_keys(chunk, examples), features, labels))
    return concatenate(parts)


def example_keys(history: History, examples: Examples) -> pd.DataFrame:
    """The identifying columns of each example (``EXAMPLE_KEY_COLUMNS``, in order)."""
    rejections = history.rejections
    rows = examples.rejection_row
    reason = rejections.codes["reason_code"][rows]
    values = (
        rejections.rejection_id[rows],
        history.lead_id[rejections.lead[rows]],
        pd.to_datetime(examples.as_of, unit="us", utc=True),
        examples.offset_days,
        pd.to_datetime(rejections.time[rows], unit="us", utc=True),
        np.asarray(REASON_CODES, dtype=object)[reason],
    )
    return pd.DataFrame(dict(zip(EXAMPLE_KEY_COLUMNS, values, strict=True)))


def concatenate(parts: list[ExampleSet]) -> ExampleSet:
    """One example set from several (chunks of the same export)."""
    first = parts[0]
    features = FeatureTable.concatenate([p.features for p in parts])
    labels = None
    if first.labels is not None:
        labels = Labels(
            *(
                np.concatenate([getattr(p.labels, f) for p in parts])
                for f in Labels.__dataclass_fields__
            )
        )
    keys = pd.concat([p.keys for p in parts], ignore_index=True)
    return ExampleSet(keys, features, labels)
