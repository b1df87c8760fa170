"""Tune a routing policy to the capacity sales and nurture have, and write it for the service.

``tune_policy`` replays scored history month by month (``serving.capacity``) and sets the
policy's thresholds so that the routed monthly volumes fit the capacity; ``write_policy``
writes the result as YAML that ``serving.policy.load_policy`` reads back unchanged, the
file marketing operations review and ``srl serve --policy`` loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from features.output import atomic_write
from serving.capacity import (
    DEFAULT_GRID,
    STATISTIC_WORDS,
    Capacity,
    ScoredHistory,
    Statistic,
    monthly_buckets,
    monthly_load,
    require_statistic,
)
from serving.policy import RoutingPolicy, load_policy

logger = logging.getLogger(__name__)

#: The thresholds ``tune_policy`` sets; every other field of the policy is kept.
TUNED_THRESHOLDS = (
    "rebound.min_probability",
    "rebound.follow_up_due_min_probability",
    "low_touch.max_probability",
)


def tune_policy(
    policy: RoutingPolicy,
    history: ScoredHistory,
    capacity: Capacity,
    grid: Sequence[float] = DEFAULT_GRID,
    statistic: Statistic = "mean",
    name: str | None = None,
) -> RoutingPolicy:
    """The policy with its thresholds set so that routed volumes fit the capacity.

    ``rebound.min_probability`` becomes the lowest grid value whose monthly sales volume
    fits ``sales_per_month`` (``follow_up_due_min_probability`` keeps its ratio to it);
    then ``low_touch.max_probability`` becomes the lowest grid value whose monthly nurture
    volume fits ``nurture_per_month``, the rebound threshold rising with it where it
    passes it (a score good enough for sales is never sent to low touch; sales then takes
    fewer, still within its capacity). Everything else
    (tiers, suppression, reason programs) is kept; the version goes up by one.

    "Fits" is judged on one ``statistic`` of the monthly volumes: with ``mean`` (the
    default) the average month fits, so single months may go over the capacity; with
    ``max`` the busiest month of ``history`` fits too, at the cost of fewer leads in the
    quieter months.

    Args:
        policy: the policy to start from.
        history: scored examples whose monthly flow stands for the coming months.
        capacity: leads per month for sales and nurture.
        grid: candidate thresholds, ascending.
        statistic: ``mean`` fits the average month, ``max`` the busiest month.
        name: a new policy name (default: keep the name).

    Raises:
        ValueError: an unknown statistic.
    """
    require_statistic(statistic)
    ratio = policy.rebound.follow_up_due_min_probability / max(policy.rebound.min_probability, 1e-9)

    def rebound_at(threshold: float) -> RoutingPolicy:
        due = min(1.0, round(threshold * ratio, 4))
        low_touch = min(policy.low_touch.max_probability, threshold)  # never above it
        return _updated(
            policy,
            rebound={"min_probability": threshold, "follow_up_due_min_probability": due},
            low_touch={"max_probability": low_touch},
        )

    sales = _lowest_fitting(grid, rebound_at, history, "sales", capacity.sales_per_month, statistic)

    def low_touch_at(threshold: float) -> RoutingPolicy:
        # A score the policy sends to sales is never one it sends to low touch: past the
        # sales threshold, sales takes only the scores above the low-touch one (fewer).
        chosen = rebound_at(max(sales, threshold))
        return _updated(chosen, low_touch={"max_probability": threshold})

    nurture = _lowest_fitting(
        grid, low_touch_at, history, "nurture", capacity.nurture_per_month, statistic
    )
    tuned = _updated(low_touch_at(nurture), version=policy.version + 1, name=name or policy.name)
    return RoutingPolicy.model_validate(tuned.model_dump())


def _lowest_fitting(
    grid: Sequence[float],
    candidate: Callable[[float], RoutingPolicy],
    history: ScoredHistory,
    bucket: str,
    limit: float,
    statistic: Statistic,
) -> float:
    """The lowest grid value whose policy keeps ``bucket``'s monthly volume within ``limit``;
    the highest, with a warning naming the volume it leaves, when none does."""
    load = float("nan")
    for value in grid:
        volumes = monthly_buckets(history, candidate(value))[bucket]
        load = monthly_load(volumes, statistic)
        if load <= limit:
            return float(value)
    logger.warning(
        "no threshold in the grid fits %s capacity of %s a month: the highest, %s, still "
        "routes %.1f a month (%s)",
        bucket,
        limit,
        grid[-1],
        load,
        STATISTIC_WORDS[statistic],
    )
    return float(grid[-1])


def threshold_changes(before: RoutingPolicy, after: RoutingPolicy) -> pd.DataFrame:
    """The thresholds ``tune_policy`` sets, side by side in two policies.

    Returns:
        One row per threshold (``TUNED_THRESHOLDS``), one column per policy, named by its
        label (``name@vVERSION``).
    """
    rows = {
        field: (_threshold(before, field), _threshold(after, field)) for field in TUNED_THRESHOLDS
    }
    return pd.DataFrame(rows, index=[before.label, after.label]).T


def _threshold(policy: RoutingPolicy, field: str) -> float:
    section, key = field.split(".")
    return float(getattr(getattr(policy, section), key))


def capacity_note(capacity: Capacity, statistic: Statistic) -> str:
    """The capacity a policy is tuned to, in words (for the notebook and the YAML comment).

    Example: ``10 sales and 25 nurture leads a month, in the average month``.
    """
    return (
        f"{capacity.sales_per_month:g} sales and {capacity.nurture_per_month:g} nurture leads "
        f"a month, in {STATISTIC_WORDS[statistic]}"
    )


def _updated(policy: RoutingPolicy, **changes: Any) -> RoutingPolicy:
    """A copy of the policy with top-level fields replaced and nested sections merged."""
    document = policy.model_dump()
    for key, value in changes.items():
        if isinstance(value, dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return RoutingPolicy.model_validate(document)


def policy_yaml(policy: RoutingPolicy, comment: str = "") -> str:
    """The policy as YAML that ``serving.policy.load_policy`` reads back unchanged."""
    header = "# Routing policy (see serving/policies/default.yaml for what each field means).\n"
    if comment:
        header += "".join(f"# {line}\n" for line in comment.splitlines())
    body = yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, width=100)
    return header + body


def write_policy(policy: RoutingPolicy, path: str | Path, comment: str = "") -> RoutingPolicy:
    """Write the policy YAML atomically and read it back through ``load_policy``.

    Returns:
        The policy as loaded from the file (equal to ``policy``).

    Raises:
        ValueError: the written file does not load back to the same policy.
    """
    text = policy_yaml(policy, comment)

    def write(temporary: Path) -> None:
        temporary.write_text(text, encoding="utf-8")

    target = atomic_write(path, write)
    loaded = load_policy(target)
    if loaded != policy:
        raise ValueError(f"{target}: the written policy does not read back unchanged")
    return loaded
