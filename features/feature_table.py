"""Feature columns and their catalogue entries, and the per-example look-ups blocks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Literal

import numpy as np

from features.config import FeatureConfig
from features.examples import Examples
from features.history import DAY_US, History
from features.normalise import normalise_text

FeatureKind = Literal["numeric", "category", "text"]


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature means and where it comes from (one row of the catalogue)."""

    name: str
    kind: FeatureKind
    meaning: str
    window: str
    source: str
    vocabulary: tuple[str, ...] = ()


@dataclass
class FeatureTable:
    """Raw feature columns for a set of examples, in catalogue order.

    ``numeric`` and ``category`` columns are float64 (categories as contract codes, NaN
    when missing); ``text`` columns hold normalised strings to be encoded with a
    vocabulary learned in training (``features.encoding``).
    """

    specs: list[FeatureSpec] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Feature names in order."""
        return [spec.name for spec in self.specs]

    def add(
        self,
        name: str,
        values: np.ndarray,
        *,
        meaning: str,
        source: str,
        window: str = "at as_of",
        kind: FeatureKind = "numeric",
        vocabulary: tuple[str, ...] = (),
    ) -> None:
        """Record one feature column and its catalogue entry."""
        if kind == "text":
            column = np.asarray(values, dtype=object)
        else:
            column = np.asarray(values, dtype=np.float64)
        self.specs.append(feature_spec(name, kind, meaning, window, source, vocabulary))
        self.columns[name] = column

    def add_block(self, specs: tuple[FeatureSpec, ...], block: np.ndarray) -> None:
        """Record several numeric features at once: column ``j`` of ``block`` is ``specs[j]``."""
        block = np.asarray(block, dtype=np.float64)
        self.specs.extend(specs)
        for position, spec in enumerate(specs):
            self.columns[spec.name] = block[:, position]

    def add_category(
        self, name: str, codes: np.ndarray, vocabulary: tuple[str, ...], **kw: str
    ) -> None:
        """Record a contract-vocabulary category given its integer codes (-1 missing)."""
        values = np.where(codes >= 0, codes, np.nan).astype(np.float64)
        self.add(
            name,
            values,
            kind="category",
            vocabulary=vocabulary,
            meaning=kw["meaning"],
            source=kw["source"],
            window=kw.get("window", "at as_of"),
        )


@cache
def feature_spec(
    name: str,
    kind: FeatureKind,
    meaning: str,
    window: str,
    source: str,
    vocabulary: tuple[str, ...] = (),
) -> FeatureSpec:
    """One shared ``FeatureSpec`` per distinct definition (specs do not depend on data)."""
    return FeatureSpec(name, kind, meaning, window, source, vocabulary)


@dataclass
class ExampleContext:
    """Per-example look-ups shared by the feature blocks.

    ``all_time_activity_counts`` (examples x activity types, every activity up to
    ``as_of``) is filled by the engagement block and read by the points block after it.
    """

    history: History
    examples: Examples
    config: FeatureConfig
    all_time_activity_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @cached_property
    def lead(self) -> np.ndarray:
        """Lead index of each example."""
        return self.history.rejections.lead[self.examples.rejection_row]

    @cached_property
    def rejected_at(self) -> np.ndarray:
        """Rejection time of each example (microseconds)."""
        return self.history.rejections.time[self.examples.rejection_row]

    @property
    def as_of(self) -> np.ndarray:
        """Scoring moment of each example (microseconds)."""
        return self.examples.as_of

    def lead_text(self, column: str) -> np.ndarray:
        """A free-text lead column, normalised once per lead (shared by every block)."""
        cache = self.__dict__.setdefault("_normalised_text", {})
        if column not in cache:
            cache[column] = normalise_text(self.history.lead_text[column])
        return cache[column]

    def days_before_as_of(self, times: np.ndarray) -> np.ndarray:
        """Days from ``times`` to each example's ``as_of``."""
        return (self.as_of - times) / DAY_US
