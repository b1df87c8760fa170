"""The capacity notebook's charts: what each draws, checked on hand-made tables and on the
small export replayed with the serving tests' model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from features.loading import Export
from features.predictor import ReconversionModel
from serving import capacity, capacity_charts
from serving.capacity import BUCKETS, Capacity, ScoredHistory
from serving.policy import RoutingPolicy, load_policy

ROOM = Capacity(sales_per_month=4, nurture_per_month=6)


@pytest.fixture(scope="module")
def quarter(model: ReconversionModel, small_export: Export) -> ScoredHistory:
    """The small export's last whole quarter, replayed at rejection."""
    history = capacity.replay(model, small_export, load_policy())
    return capacity.in_period(history, 3, end=small_export.snapshot_at)


def _bars(axes: Axes) -> list[BarContainer]:
    return [c for c in axes.containers if isinstance(c, BarContainer)]


def test_threshold_chart_draws_volumes_capture_and_both_capacities() -> None:
    table = pd.DataFrame(
        {"per_month": [12.0, 6.0, 1.0], "capture_rate": [0.9, 0.5, 0.1]},
        index=pd.Index([0.1, 0.2, 0.3], name="threshold"),
    )

    figure = capacity_charts.threshold_chart(table, ROOM)

    assert isinstance(figure, Figure)
    volume, caught = figure.axes
    volumes, sales, total = volume.get_lines()
    np.testing.assert_array_equal(volumes.get_ydata(), table["per_month"])
    assert [sales.get_ydata()[0], total.get_ydata()[0]] == [4, 10]
    assert [t.get_text() for t in volume.get_legend().get_texts()] == [
        "leads per month",
        "sales capacity",
        "sales + nurture capacity",
    ]
    np.testing.assert_array_equal(caught.get_lines()[0].get_ydata(), table["capture_rate"])
    assert caught.get_ylim() == (0, 1.05)


def test_comeback_chart_stacks_each_policys_comebacks_by_bucket_first_row_on_top() -> None:
    comparison = pd.DataFrame(
        {
            f"{bucket}_comebacks": [float(i + 1), float(10 * (i + 1))]
            for i, bucket in enumerate(BUCKETS)
        },
        index=["policy a", "policy b"],
    ).assign(captured=0.0)

    figure = capacity_charts.comeback_chart(comparison, "Where they went")

    (axes,) = figure.axes
    bars = _bars(axes)
    assert [b.get_label() for b in bars] == list(BUCKETS)
    assert [[p.get_width() for p in b] for b in bars] == [[1, 10], [2, 20], [3, 30], [4, 40]]
    assert bars[1].patches[0].get_x() == 1  # stacked after the sales comebacks
    assert [t.get_text() for t in axes.get_yticklabels()] == ["policy a", "policy b"]
    assert axes.yaxis_inverted()
    assert (axes.get_title(), axes.get_xlabel()) == ("Where they went", "comebacks in the period")
    assert figure.get_size_inches()[1] == pytest.approx(0.6 * 2 + 1.5)


def test_monthly_chart_draws_each_policys_buckets_per_month_against_capacity(
    quarter: ScoredHistory,
) -> None:
    policy = load_policy()
    rebound = policy.rebound.model_dump() | {"min_probability": 0.1}
    looser = RoutingPolicy.model_validate(
        policy.model_dump() | {"version": policy.version + 1, "name": "looser", "rebound": rebound}
    )

    figure = capacity_charts.monthly_chart(quarter, [policy, looser], ROOM, "Last quarter")

    assert len(figure.axes) == 2
    for axes, routed in zip(figure.axes, [policy, looser], strict=True):
        volumes = capacity.monthly_buckets(quarter, routed)
        assert len(volumes) == 3
        bars = _bars(axes)
        assert axes.get_title() == f"Last quarter, {routed.label}"
        assert [b.get_label() for b in bars] == list(BUCKETS)
        for bar, bucket in zip(bars, BUCKETS, strict=True):
            assert [p.get_height() for p in bar] == volumes[bucket].tolist()
        assert [t.get_text() for t in axes.get_xticklabels()] == [
            f"{month:%Y-%m}" for month in volumes.index
        ]
        assert [line.get_ydata()[0] for line in axes.get_lines()] == [4, 6]
    assert figure.axes[0].get_shared_y_axes().joined(figure.axes[0], figure.axes[1])
