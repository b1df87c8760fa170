"""The example table's own columns: what identifies each example and, once labelled, its labels.

``srl features`` writes them beside the feature columns, so no feature may take one of these
names (``features.config`` refuses a custom column named like one).
"""

from __future__ import annotations

#: The identifying columns of every example, in order (``features.dataset.example_keys``).
EXAMPLE_KEY_COLUMNS = (
    "rejection_id",
    "lead_id",
    "as_of",
    "offset_days",
    "rejected_at",
    "reason_code",
)

#: The label columns of a labelled example table, each with the ``Labels`` field it holds.
LABEL_COLUMNS = {
    "label": "target",
    "reconverted": "reconverted",
    "won": "won",
    "censored": "censored",
    "days_to_reconversion": "days_to_reconversion",
}
