"""Thresholds, capacity and policy tuning: how many comebacks a routing choice captures.

Sales can take back only so many rejected leads a month and nurture programs have limits
too. These functions replay scored historical examples month by month, each example scored
and routed as the API would have done at its ``as_of`` (``serving.scoring.score_features``)
with what was known then: a consent change after ``as_of``, which the API would also heed,
is not read. They count how many of the leads that did come back each threshold or policy
would have put in front of sales or into nurture (``serving.policy_tuning`` tunes a policy
to the capacity available). The computations behind
``notebooks/03_routing_and_capacity.ipynb``; nothing here draws (``serving.capacity_charts``
does).

Buckets: ``sales`` (handed back to sales), ``nurture`` (an active nurture program),
``low_touch`` (the long-term low-touch track) and ``suppressed`` (no contact allowed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.dataset import ExampleSet, build_training_set
from features.history import History, history_from_export
from features.loading import Export, positions_in
from features.predictor import ReconversionModel
from serving.contact import ContactNow
from serving.policy import RoutingPolicy
from serving.routing import Routes, RoutingInputs, route
from serving.scoring import Scored, score_features

BUCKETS = ("sales", "nurture", "low_touch", "suppressed")
DEFAULT_GRID = tuple(float(v) for v in np.round(np.arange(0.01, 1.0, 0.01), 2))
EPOCH = pd.Timestamp(0, tz="UTC")
Statistic = Literal["mean", "max"]
#: What each statistic fits to the capacity, in words.
STATISTIC_WORDS: dict[Statistic, str] = {"mean": "the average month", "max": "the busiest month"}


@dataclass(frozen=True)
class Capacity:
    """How many leads each team can take each month.

    Attributes:
        sales_per_month: leads sales can take back (the ``rebound`` program).
        nurture_per_month: leads the active nurture programs can take.
    """

    sales_per_month: float
    nurture_per_month: float


#: The re-scorings after a rejection at which a replay looks for a return to sales: a lead
#: goes back to sales for intent after its rejection, which a score at the rejection has
#: none of (``serving.routing``), so a replay of rejections alone would send none.
REBOUND_CHECKS_DAYS = (30, 90)


@dataclass(frozen=True)
class Rescores:
    """Later scoring moments of a history's examples, consulted for returns to sales.

    Attributes:
        inputs: what routing read at each later moment.
        owner: for each later moment, the position in the history's frame of the example
            (the same rejection, scored earlier) it belongs to.
    """

    inputs: RoutingInputs
    owner: np.ndarray

    def take(self, keep: np.ndarray) -> Rescores:
        """The later moments of the examples ``keep`` selects, their owners renumbered."""
        renumbered = np.cumsum(keep) - 1
        kept = keep[self.owner]
        return Rescores(self.inputs.take(kept), renumbered[self.owner[kept]])


@dataclass(frozen=True)
class ScoredHistory:
    """Historical examples scored and routed as the API would have done at each ``as_of``.

    Attributes:
        frame: one row per example: the example keys, ``month`` (of ``as_of``),
            ``probability``, ``tier``, ``priority``, ``program``, ``suppressed``,
            ``outcome`` (1 came back within the horizon, 0 not, NaN unknown) and
            ``points_score`` (the classic points score, for comparison). With
            ``rescores``, an example that is not suppressed and goes back to sales at a
            later moment counts in sales (program and priority), in its own month.
        inputs: what routing read, to replay the same examples under other policies.
        rescores: later scoring moments of the examples (None: none are consulted).
    """

    frame: pd.DataFrame
    inputs: RoutingInputs
    rescores: Rescores | None = None

    def take(self, mask: np.ndarray | pd.Series) -> ScoredHistory:
        """The examples selected by a boolean mask (with their later moments)."""
        keep = np.asarray(mask, dtype=bool)
        frame = self.frame.loc[keep].reset_index(drop=True)
        rescores = None if self.rescores is None else self.rescores.take(keep)
        return ScoredHistory(frame, self.inputs.take(keep), rescores)


def score_history(
    model: ReconversionModel,
    examples: ExampleSet,
    policy: RoutingPolicy,
    export: Export,
    later: ExampleSet | None = None,
) -> ScoredHistory:
    """Score and route every example (the shared API and batch path), keeping its outcome.

    Args:
        model: the model to score with.
        examples: examples built from ``export`` with the model's feature settings.
        policy: the routing policy.
        export: the export, for what suppressed a lead at each ``as_of`` beyond its
            features (a standing ``do_not_contact`` rejection of the lead, as the API reads
            it); nothing after an ``as_of`` is read.
        later: later scorings of the same rejections, consulted for returns to sales
            (``ScoredHistory.rescores``); a rejection not among ``examples`` is ignored.
    """
    history = history_from_export(export, model.config)
    scored = _scored(model, examples, policy, history)
    rescores = None if later is None else _rescores(model, examples, later, policy, history)
    frame = examples.keys.copy()
    frame["month"] = _month(frame["as_of"])
    frame["probability"] = scored.probability
    frame = _with_routes(frame, _with_returns(scored.routes, rescores, policy))
    target = examples.labels.target if examples.labels is not None else np.nan
    frame["outcome"] = np.broadcast_to(target, len(frame)).astype(np.float64)
    frame["points_score"] = examples.features.columns["points_score"]
    return ScoredHistory(frame, scored.inputs, rescores)


def _scored(
    model: ReconversionModel, examples: ExampleSet, policy: RoutingPolicy, history: History
) -> Scored:
    """``examples`` scored and routed as the API would at their ``as_of``."""
    as_of = as_of_microseconds(examples.keys["as_of"])
    lead = positions_in(pd.Index(history.lead_id), examples.keys["lead_id"])
    contact = ContactNow.known_at(history, lead, as_of)
    return score_features(model, examples.features, as_of, policy, contact=contact)


def _rescores(
    model: ReconversionModel,
    examples: ExampleSet,
    later: ExampleSet,
    policy: RoutingPolicy,
    history: History,
) -> Rescores:
    """The later scorings of ``examples``' rejections, each tied to its example (the last
    one of its rejection, when ``examples`` scores a rejection more than once)."""
    ids = examples.keys["rejection_id"].to_numpy()
    last = pd.Series(np.arange(len(ids)), index=ids).groupby(level=0).max()
    owner = last.reindex(later.keys["rejection_id"].to_numpy()).to_numpy()
    known = ~np.isnan(owner)
    owner = np.where(known, owner, -1).astype(np.int64)
    scored = _scored(model, later.take(known), policy, history)
    return Rescores(scored.inputs, owner[known])


def _with_returns(routes: Routes, rescores: Rescores | None, policy: RoutingPolicy) -> Routes:
    """``routes`` with each example that goes back to sales at a later moment in sales."""
    if rescores is None or len(rescores.owner) == 0:
        return routes
    later = route(rescores.inputs, policy)
    returned = np.zeros(len(routes.program), dtype=bool)
    returned[rescores.owner[later.program == policy.rebound.program]] = True
    returned &= ~routes.suppressed
    return replace(
        routes,
        program=np.where(returned, policy.rebound.program, routes.program),
        priority=np.where(returned, 1, routes.priority),
    )


def replay(
    model: ReconversionModel,
    export: Export,
    policy: RoutingPolicy,
    offsets: Sequence[int] = (0,),
) -> ScoredHistory:
    """Every rejection of the export scored and routed as the API would have done it.

    The examples are built with the model's own feature settings (``build_training_set``,
    labelled where the export has seen their outcome, NaN where not) and only those scored
    ``offsets`` days after their rejection are kept, then scored by ``score_history``.
    With one offset, each rejection is one row, and its re-scorings of
    ``REBOUND_CHECKS_DAYS`` after that offset (those the model builds) are consulted for
    returns to sales: a rejection that goes back to sales at one of them counts in sales,
    in the month of its row. A lead goes back to sales for intent after its rejection only,
    so a replay of rejections alone would send none there. With several offsets, each row
    is its own scoring moment and counts for that moment alone.

    Args:
        model: the model to score with.
        export: the export whose rejections are replayed.
        policy: the routing policy.
        offsets: scoring points replayed, in days after the rejection (0: the day of the
            rejection); each must be one of the model's ``rescore_offsets_days``.

    Raises:
        ValueError: an offset the model builds no examples at.
    """
    built = model.config.rescore_offsets_days
    unknown = sorted(set(offsets) - set(built))
    if not offsets or unknown:
        raise ValueError(
            f"offsets {list(offsets)}: the model builds examples at {list(built)} days after "
            f"a rejection only (not at {unknown})"
        )
    examples = build_training_set(export, model.config)
    offset = examples.keys["offset_days"]
    checks = [days for days in REBOUND_CHECKS_DAYS if days in built and days > offsets[0]]
    once = len(offsets) == 1
    later = examples.take(offset.isin(checks).to_numpy()) if once and checks else None
    replayed = examples.take(offset.isin(offsets).to_numpy())
    return score_history(model, replayed, policy, export, later)


def as_of_microseconds(as_of: pd.Series) -> np.ndarray:
    """Timestamps (UTC) as int64 microseconds since the epoch, as routing takes them."""
    return ((pd.to_datetime(as_of, utc=True) - EPOCH) // pd.Timedelta(microseconds=1)).to_numpy(
        dtype=np.int64
    )


def _month(as_of: pd.Series) -> pd.Series:
    naive = pd.to_datetime(as_of, utc=True).dt.tz_localize(None)
    return naive.dt.to_period("M").dt.to_timestamp()


def _with_routes(frame: pd.DataFrame, routes: Routes) -> pd.DataFrame:
    return frame.assign(
        tier=routes.tier,
        priority=routes.priority,
        program=routes.program,
        suppressed=routes.suppressed,
    )


def reroute(history: ScoredHistory, policy: RoutingPolicy) -> ScoredHistory:
    """The same examples routed by another policy (probabilities and outcomes unchanged)."""
    routes = _with_returns(route(history.inputs, policy), history.rescores, policy)
    return ScoredHistory(_with_routes(history.frame, routes), history.inputs, history.rescores)


def in_period(
    history: ScoredHistory, months: int, end: pd.Timestamp | None = None
) -> ScoredHistory:
    """The examples of the last ``months`` whole calendar months complete by ``end``.

    Only complete months count, so that volumes per month are never diluted by a month
    the export covers in part: with ``end`` on 29 June and ``months=3`` the period is
    March to May.

    Args:
        history: the scored examples.
        months: the period's length in months (3 for a quarter).
        end: the moment the data ends (default: the latest ``as_of``).
    """
    as_of = pd.to_datetime(history.frame["as_of"], utc=True)
    stop = _month_start(as_of.max() if end is None else _utc(end))
    return _between(history, stop - pd.DateOffset(months=months), stop)


def evaluation_period(
    history: ScoredHistory, metadata: Mapping[str, Any], fallback_months: int = 6
) -> ScoredHistory:
    """The examples to judge thresholds on: known outcomes scored in the model's test window.

    Training records the test window (``metadata["test_window"]``), a period whose outcomes
    the model was judged on and not trained on; the whole calendar months inside it are
    kept. Without one, the latest ``fallback_months`` whole months with known outcomes.
    """
    known = history.take(history.frame["outcome"].notna().to_numpy())
    window = metadata.get("test_window") or {}
    if not window.get("start") or not window.get("end"):
        return in_period(known, fallback_months)
    start = _utc(pd.Timestamp(window["start"]))
    first = _month_start(start)
    first = first if first == start else first + pd.DateOffset(months=1)
    return _between(known, first, _month_start(_utc(pd.Timestamp(window["end"]))))


def _between(history: ScoredHistory, start: pd.Timestamp, stop: pd.Timestamp) -> ScoredHistory:
    """The examples with ``start <= as_of < stop``."""
    as_of = pd.to_datetime(history.frame["as_of"], utc=True)
    return history.take(((as_of >= start) & (as_of < stop)).to_numpy())


def _month_start(moment: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(year=moment.year, month=moment.month, day=1, tz="UTC")


def _utc(moment: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def policy_buckets(frame: pd.DataFrame, policy: RoutingPolicy) -> pd.Series:
    """The bucket of each routed row: sales, nurture, low_touch or suppressed."""
    bucket = np.full(len(frame), "nurture", dtype=object)
    bucket[(frame["program"] == policy.rebound.program).to_numpy()] = "sales"
    bucket[(frame["program"] == policy.low_touch.program).to_numpy()] = "low_touch"
    bucket[frame["suppressed"].to_numpy(dtype=bool)] = "suppressed"
    return pd.Series(bucket, index=frame.index, name="bucket")


def capacity_buckets(frame: pd.DataFrame, capacity: Capacity, score: str) -> pd.Series:
    """Buckets when each month's contactable leads are ranked by ``score`` and cut by capacity.

    The top ``sales_per_month`` of a month go to sales, the next ``nurture_per_month`` to
    nurture, the rest to the low-touch track; suppressed rows stay suppressed.
    """
    suppressed = frame["suppressed"].to_numpy(dtype=bool)
    ranked = frame.loc[~suppressed].groupby("month")[score].rank(method="first", ascending=False)
    rank = pd.Series(np.inf, index=frame.index)
    rank.loc[ranked.index] = ranked
    bucket = np.where(rank <= capacity.sales_per_month, "sales", "low_touch").astype(object)
    limit = capacity.sales_per_month + capacity.nurture_per_month
    bucket[(rank > capacity.sales_per_month) & (rank <= limit)] = "nurture"
    bucket[suppressed] = "suppressed"
    return pd.Series(bucket, index=frame.index, name="bucket")


def bucket_summary(frame: pd.DataFrame, buckets: pd.Series) -> pd.DataFrame:
    """Leads and comebacks per bucket.

    Returns:
        Indexed by bucket (all four, zeros where empty): ``leads``, ``per_month``,
        ``comebacks`` (known outcomes only), ``comeback_rate`` and ``share_of_comebacks``.
    """
    outcome = frame["outcome"]
    grouped = outcome.groupby(buckets)
    table = pd.DataFrame({"leads": grouped.size(), "comebacks": grouped.sum()})
    table = table.reindex(list(BUCKETS), fill_value=0)
    table.insert(1, "per_month", table["leads"] / max(_month_count(frame), 1))
    known = outcome.notna().groupby(buckets).sum().reindex(list(BUCKETS), fill_value=0)
    table["comeback_rate"] = table["comebacks"] / known.replace(0, np.nan)
    total = float(outcome.sum())
    table["share_of_comebacks"] = table["comebacks"] / total if total else np.nan
    table.index.name = "bucket"
    return table


def _months(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """Every month from the frame's first to its last, empty ones included (none if empty)."""
    if frame.empty:
        return pd.DatetimeIndex([])
    return pd.period_range(frame["month"].min(), frame["month"].max(), freq="M").to_timestamp()


def _month_count(frame: pd.DataFrame) -> int:
    return len(_months(frame))


def parse_statistic(value: str) -> Statistic:
    """The monthly statistic a capacity is checked against, from text (a notebook parameter).

    Raises:
        ValueError: neither ``mean`` (the average month) nor ``max`` (the busiest month).
    """
    text = value.strip().lower()
    for statistic in STATISTIC_WORDS:
        if text == statistic:
            return statistic
    raise ValueError(
        f"capacity statistic {value!r}: expected mean (the average month) or max (the "
        "busiest month)"
    )


def require_statistic(statistic: str) -> None:
    """Refuse a statistic other than ``mean`` and ``max`` (a caller passing free text).

    Raises:
        ValueError: naming the statistic.
    """
    if statistic not in STATISTIC_WORDS:
        raise ValueError(f"capacity statistic {statistic!r}: expected mean or max")


def monthly_load(volumes: pd.Series, statistic: Statistic) -> float:
    """The monthly volume compared with a capacity: the mean or the busiest month.

    Raises:
        ValueError: an unknown statistic.
    """
    require_statistic(statistic)
    return float(volumes.mean() if statistic == "mean" else volumes.max())


def threshold_table(
    frame: pd.DataFrame,
    thresholds: Sequence[float],
    capacity: Capacity,
    score: str = "probability",
    statistic: Statistic = "mean",
) -> pd.DataFrame:
    """What handing every contactable lead at or above a threshold to sales would do.

    Only rows with a known outcome count, so pass a fully observed period.

    Returns:
        One row per threshold: ``per_month`` (mean leads handed over per month),
        ``peak_month``, ``comebacks`` caught, ``capture_rate`` (of all contactable
        comebacks), ``precision`` (comeback rate of the handed-over leads), ``fits_sales``
        and ``fits_sales_and_nurture`` (the monthly ``statistic`` within capacity).
    """
    known = frame.loc[frame["outcome"].notna() & ~frame["suppressed"].astype(bool)]
    months = _months(frame)
    total = float(known["outcome"].sum())
    rows = []
    for threshold in thresholds:
        chosen = known[score].to_numpy() >= threshold
        monthly = pd.Series(chosen).groupby(known["month"].to_numpy()).sum()
        monthly = monthly.reindex(months, fill_value=0)
        caught = float(known["outcome"].to_numpy()[chosen].sum())
        load = monthly_load(monthly, statistic)
        rows.append(
            {
                "threshold": float(threshold),
                "per_month": float(monthly.mean()),
                "peak_month": int(monthly.max()),
                "comebacks": caught,
                "capture_rate": caught / total if total else np.nan,
                "precision": caught / chosen.sum() if chosen.any() else np.nan,
                "fits_sales": load <= capacity.sales_per_month,
                "fits_sales_and_nurture": load
                <= capacity.sales_per_month + capacity.nurture_per_month,
            }
        )
    return pd.DataFrame(rows).set_index("threshold")


def compare_policies(
    history: ScoredHistory,
    capacity: Capacity,
    policies: Mapping[str, RoutingPolicy],
    scores: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Comebacks per bucket under routing policies, capacity-bound rankings and chance.

    Args:
        history: scored examples of a fully observed period.
        capacity: leads per month for sales and nurture.
        policies: routing policies by display name (routed as the API would; not bound by
            capacity, their monthly volumes show whether they fit).
        scores: ranking columns by display name, each cut by capacity month by month
            (default: the model's probability and the classic points score).

    Returns:
        One row per policy: leads per month and comebacks per bucket, ``captured`` (sales
        plus nurture comebacks) and ``capture_rate`` of all comebacks.
    """
    if scores is None:
        scores = {"model ranking": "probability", "points score ranking": "points_score"}
    frame = history.frame
    rows = {
        name: _policy_row(frame, policy_buckets(reroute(history, policy).frame, policy))
        for name, policy in policies.items()
    }
    for name, column in scores.items():
        rows[name] = _policy_row(frame, capacity_buckets(frame, capacity, column))
    rows["at random (expected)"] = _random_row(frame, capacity)
    return pd.DataFrame.from_dict(rows, orient="index")


def _policy_row(frame: pd.DataFrame, buckets: pd.Series) -> dict[str, float]:
    summary = bucket_summary(frame, buckets)
    row = {f"{b}_per_month": float(summary.loc[b, "per_month"]) for b in BUCKETS}
    row |= {f"{b}_comebacks": float(summary.loc[b, "comebacks"]) for b in BUCKETS}
    return _with_capture(row, float(frame["outcome"].sum()))


def _with_capture(row: dict[str, float], total: float) -> dict[str, float]:
    row["captured"] = row["sales_comebacks"] + row["nurture_comebacks"]
    row["capture_rate"] = row["captured"] / total if total else np.nan
    return row


def _random_row(frame: pd.DataFrame, capacity: Capacity) -> dict[str, float]:
    """Expected comebacks when each month's contactable leads are picked at random."""
    suppressed = frame["suppressed"].to_numpy(dtype=bool)
    open_rows = frame.loc[~suppressed]
    per_month = open_rows.groupby("month")["outcome"].agg(["size", "sum"])
    sales = np.minimum(capacity.sales_per_month, per_month["size"])
    nurture = np.minimum(capacity.nurture_per_month, per_month["size"] - sales)
    rate = per_month["sum"] / per_month["size"]
    months = max(_month_count(frame), 1)
    leads = {"sales": sales.sum(), "nurture": nurture.sum()}
    leads["low_touch"] = per_month["size"].sum() - leads["sales"] - leads["nurture"]
    comebacks = {"sales": (sales * rate).sum(), "nurture": (nurture * rate).sum()}
    comebacks["low_touch"] = per_month["sum"].sum() - comebacks["sales"] - comebacks["nurture"]
    leads["suppressed"], comebacks["suppressed"] = (
        suppressed.sum(),
        frame["outcome"][suppressed].sum(),
    )
    row = {f"{b}_per_month": float(leads[b]) / months for b in BUCKETS}
    row |= {f"{b}_comebacks": float(comebacks[b]) for b in BUCKETS}
    return _with_capture(row, float(frame["outcome"].sum()))


def monthly_buckets(history: ScoredHistory, policy: RoutingPolicy) -> pd.DataFrame:
    """Leads per month in each bucket when ``policy`` routes the examples."""
    frame = reroute(history, policy).frame
    buckets = policy_buckets(frame, policy)
    table = pd.crosstab(frame["month"], buckets).reindex(columns=list(BUCKETS), fill_value=0)
    return table.reindex(_months(frame), fill_value=0)


def program_split(frame: pd.DataFrame) -> pd.DataFrame:
    """How routed leads split over programs: leads, share, mean probability, comebacks.

    Returns:
        Indexed by program, largest first; ``comebacks`` and ``comeback_rate`` count
        known outcomes only (NaN rate where none is known).
    """
    grouped = frame.groupby("program")
    table = pd.DataFrame(
        {
            "leads": grouped.size(),
            "mean_probability": grouped["probability"].mean(),
            "comebacks": grouped["outcome"].sum(),
            "known_outcomes": grouped["outcome"].count(),
        }
    )
    table.insert(1, "share", table["leads"] / max(len(frame), 1))
    table["comeback_rate"] = table["comebacks"] / table["known_outcomes"].replace(0, np.nan)
    return table.sort_values("leads", ascending=False, kind="stable")
