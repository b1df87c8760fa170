"""A short description of an export: volumes, time span, reasons, observed outcomes."""

from __future__ import annotations

from typing import Any

import numpy as np

from features.config import FeatureConfig
from features.contract import TABLES
from features.examples import Examples
from features.export_end import table_ends
from features.history import history_from_export
from features.labels import label_examples
from features.loading import Export, event_time_range
from features.timestamps import microseconds


def summarise_export(export: Export, horizon_days: int = 365) -> dict[str, Any]:
    """Volumes, time span, rejections by reason and stage, and observed outcomes.

    Each rejection is judged at its own moment (``as_of = rejected_at``): its outcome is
    observed when the whole horizon lies before the snapshot, censored otherwise.
    """
    config = FeatureConfig(horizon_days=horizon_days)
    history = history_from_export(export, config)
    rows = np.arange(len(history.rejections))
    examples = Examples.at(history, rows, history.rejections.time)
    snapshot = microseconds(export.snapshot_at.to_pydatetime())
    labels = label_examples(history, examples, config, snapshot)
    observed = ~labels.censored
    rejections = export.rejections
    return {
        "rows": {t.name: len(export.tables[t.name]) for t in TABLES},
        "files": {name: str(path) for name, path in export.files.items()},
        "time_span": {
            "first": event_time_range(export.tables)[0].isoformat(),
            "snapshot": export.snapshot_at.isoformat(),
            "latest_by_table": {
                name: end.isoformat() for name, end in table_ends(export.tables).items()
            },
        },
        "rejections_by_reason": _counts(rejections["reason_code"]),
        "rejections_by_stage": _counts(rejections["stage_at_rejection"]),
        "horizon_days": horizon_days,
        "observed_rejections": int(observed.sum()),
        "censored_rejections": int(labels.censored.sum()),
        "reconversion_rate_observed": (
            float(labels.reconverted[observed].mean()) if observed.any() else None
        ),
        "warnings": list(export.warnings),
    }


def _counts(series: Any) -> dict[str, int]:
    counts = series.value_counts()
    return {str(k): int(v) for k, v in counts.items() if v > 0}


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few human-readable lines."""
    rows = ", ".join(f"{name} {count:,}" for name, count in summary["rows"].items())
    rate = summary["reconversion_rate_observed"]
    lines = [
        f"rows: {rows}",
        f"time span: {summary['time_span']['first']} .. {summary['time_span']['snapshot']}",
        "latest event by table: " + _pairs(summary["time_span"]["latest_by_table"]),
        "rejections by reason: " + _pairs(summary["rejections_by_reason"]),
        "rejections by stage: " + _pairs(summary["rejections_by_stage"]),
        f"{summary['horizon_days']}-day outcome: {summary['observed_rejections']:,} observed, "
        f"{summary['censored_rejections']:,} censored",
        "re-conversion rate among observed: " + ("n/a" if rate is None else f"{rate:.1%}"),
    ]
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)


def _pairs(values: dict[str, int] | dict[str, str]) -> str:
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in values.items())
