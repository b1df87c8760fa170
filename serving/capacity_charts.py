"""The charts of ``notebooks/03_routing_and_capacity.ipynb``, drawn with matplotlib's
object API (no pyplot state, no display).

Each function takes what ``serving.capacity`` computed and returns a
``matplotlib.figure.Figure``; the notebook displays it. Nothing here counts: the numbers
drawn are those of the tables the notebook shows beside the charts.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from serving.capacity import BUCKETS, Capacity, ScoredHistory, monthly_buckets
from serving.policy import RoutingPolicy


def threshold_chart(table: pd.DataFrame, capacity: Capacity) -> Figure:
    """Leads per month (left axis) and share of comebacks caught (right axis) per threshold.

    Args:
        table: ``serving.capacity.threshold_table``, indexed by threshold.
        capacity: drawn as dotted lines: sales capacity, and sales plus nurture capacity.
    """
    figure = Figure(figsize=(10, 4.5))
    volume = figure.subplots()
    volume.plot(table.index, table["per_month"], marker="o", label="leads per month")
    _capacity_line(volume, capacity.sales_per_month, "tab:blue", "sales capacity")
    total = capacity.sales_per_month + capacity.nurture_per_month
    _capacity_line(volume, total, "grey", "sales + nurture capacity")
    volume.set(xlabel="probability threshold", ylabel="leads per month")
    caught = volume.twinx()
    caught.plot(
        table.index, table["capture_rate"], color="tab:orange", marker=".", label="comebacks caught"
    )
    caught.set(ylabel="share of comebacks caught", ylim=(0, 1.05))
    volume.legend(loc="center right")
    caught.legend(loc="upper right")
    return figure


def comeback_chart(comparison: pd.DataFrame, title: str) -> Figure:
    """Where each policy's comebacks went: one stacked bar per policy, one colour per bucket.

    Args:
        comparison: ``serving.capacity.compare_policies``, one row per policy (first on top).
        title: the chart's title.
    """
    comebacks = comparison[[f"{bucket}_comebacks" for bucket in BUCKETS]]
    comebacks = comebacks.rename(columns=lambda column: column.removesuffix("_comebacks"))
    figure = Figure(figsize=(10, 0.6 * len(comparison) + 1.5))
    axes = figure.subplots()
    comebacks.plot.barh(ax=axes, stacked=True, title=title)
    axes.set_xlabel("comebacks in the period")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.invert_yaxis()
    return figure


def monthly_chart(
    period: ScoredHistory, policies: Sequence[RoutingPolicy], capacity: Capacity, title: str
) -> Figure:
    """Leads per month in each bucket, one panel per policy routing the same examples.

    Args:
        period: the scored examples (``serving.capacity.in_period``).
        policies: the policies to route them by, one panel each (titled with its label).
        capacity: drawn as dotted lines: sales (blue) and nurture (orange) capacity.
        title: the start of each panel's title.
    """
    figure = Figure(figsize=(7 * len(policies), 3.5))
    axes = figure.subplots(1, len(policies), squeeze=False, sharey=True)[0]
    for panel, policy in zip(axes, policies, strict=True):
        volumes = monthly_buckets(period, policy)
        volumes.index = pd.Index([f"{month:%Y-%m}" for month in volumes.index])
        volumes.plot.bar(ax=panel, title=f"{title}, {policy.label}", rot=0)
        _capacity_line(panel, capacity.sales_per_month, "tab:blue")
        _capacity_line(panel, capacity.nurture_per_month, "tab:orange")
    return figure


def _capacity_line(axes: Axes, level: float, colour: str, label: str | None = None) -> None:
    axes.axhline(level, color=colour, linestyle=":", label=label)
