"""The feature engine: one implementation for training, batch scoring and the API.

Every feature is computed from rows at or before each example's ``as_of`` by position
look-ups over sorted numpy columns (see ``features.positions``). Each block declares its
features as it computes them, so the feature catalogue is generated from this code.
"""

from __future__ import annotations

from collections.abc import Callable

from features.config import FeatureConfig
from features.engagement_features import (
    ACTIVITY_GROUPS,
    INTENT_ACTIVITIES,
    engagement_block,
    points_block,
)
from features.examples import Examples
from features.feature_table import ExampleContext, FeatureKind, FeatureSpec, FeatureTable
from features.history import History
from features.profile_features import (
    consent_block,
    earlier_rejection_block,
    lead_block,
    opportunity_block,
    rejection_block,
)

__all__ = [
    "ACTIVITY_GROUPS",
    "INTENT_ACTIVITIES",
    "FeatureKind",
    "FeatureSpec",
    "FeatureTable",
    "compute_features",
]

#: The blocks in catalogue order; the points score reads the engagement block's counts.
FEATURE_BLOCKS: tuple[Callable[[ExampleContext, FeatureTable], None], ...] = (
    lead_block,
    rejection_block,
    earlier_rejection_block,
    opportunity_block,
    consent_block,
    engagement_block,
    points_block,
)


def compute_features(history: History, examples: Examples, config: FeatureConfig) -> FeatureTable:
    """Compute every feature of every example from rows at or before its ``as_of``."""
    context = ExampleContext(history, examples, config)
    table = FeatureTable()
    for block in FEATURE_BLOCKS:
        block(context, table)
    return table
