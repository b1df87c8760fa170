"""The model registry: challenger and champion aliases, the promotion gate, people's overrides.

Every trained version is registered under the configured name (``srl-reconversion``) and
gets the ``challenger`` alias. It becomes ``champion`` only when it beats every baseline of
its run on its test window, and then beats the current champion on the same recent test
examples by the configured margin (only those the champion was not fitted on), or there is
no champion. ``promote`` and ``rollback`` let a person
override; each move of the champion alias is recorded on the versions as tags (who, when,
why, which version it replaced).
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.config import FeatureConfig
from features.dataset import ExampleSet, build_training_set
from features.error_text import error_summary, without_credentials
from features.loading import Export
from features.model_store import LoadedModel, ModelLoadError, check_registry_exists
from features.tracking_store import registry_uri, tracking_uri
from training.config import PromotionConfig
from training.metrics import LOWER_IS_BETTER, score_metrics
from training.split import fitted_through, moment_text, seen_in_fitting

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION_TAG = "previous_champion"
HISTORY_TAG = "champion_history"
MAX_TAG_LENGTH = 5000
PERSON_DECIDES = "a person must decide (srl promote)"


class RegistryError(RuntimeError):
    """A registry action is impossible (no such version, nothing to roll back to)."""


@dataclass(frozen=True)
class GateDecision:
    """The promotion gate's verdict on a challenger.

    Attributes:
        promoted: whether the challenger became champion.
        reason: a sentence saying why.
        metric: the metric compared.
        margin: the margin the challenger had to beat the champion by.
        challenger_value: the challenger's metric on the compared examples.
        champion_version: the champion at the time, if any.
        champion_value: the champion's metric on the same examples.
        compared_examples: how many test examples both models scored.
    """

    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger_value: float | None = None
    champion_version: str | None = None
    champion_value: float | None = None
    compared_examples: int = 0

    def tags(self) -> dict[str, str]:
        """The decision as model-version tags."""
        return {f"gate.{k}": str(v) for k, v in asdict(self).items() if v is not None}


def registry_client() -> MlflowClient:
    """A client for the configured tracking store and registry."""
    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def existing_registry_client(name: str) -> MlflowClient:
    """A client of a registry that already exists: listing or moving aliases creates none.

    Raises:
        RegistryError: the registry is the embedded sqlite store and no model was trained yet.
    """
    try:
        check_registry_exists(name)
    except ModelLoadError as error:
        raise RegistryError(str(error)) from error
    try:
        return registry_client()
    except Exception as error:  # an unsupported store URI, a database driver not installed
        raise _unreachable(error) from error


#: MLflow's answers that mean "no such model, version or alias" (anything else is a failure
#: to ask: the registry unreachable, a server error).
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def _unreachable(error: Exception) -> RegistryError:
    """The error for a registry that could not be asked, naming it (credentials masked)."""
    where = without_credentials(registry_uri())
    return RegistryError(f"cannot use the registry at {where}: {error_summary(error)}")


def beats(metric: str, challenger: float, champion: float, margin: float) -> bool:
    """Whether ``challenger`` is better than ``champion`` by at least ``margin``."""
    if not (math.isfinite(challenger) and math.isfinite(champion)):
        return False
    if metric in LOWER_IS_BETTER:
        return challenger <= champion - margin
    return challenger >= champion + margin


def baseline_refusal(
    metric: str, value: float, baselines: Mapping[str, Mapping[str, float]]
) -> str | None:
    """Why a challenger may not become champion by itself against its run's baselines.

    A model that does no better than the points score, the qualification rule or the
    logistic regression on the promotion metric (a booster that stopped at its first tree
    gives every lead one score) is never promoted by the gate, with or without a champion.

    Args:
        metric: the promotion metric.
        value: the challenger's metric on its test window.
        baselines: each baseline's overall metrics on the same window.

    Returns:
        The reason naming the first baseline it does not beat, or None.
    """
    for name, metrics in baselines.items():
        theirs = float(metrics.get(metric, math.nan))
        if math.isfinite(theirs) and not _better(metric, value, theirs):
            return (
                f"challenger does not beat the {name} baseline on {metric} "
                f"({value:.4f} vs {theirs:.4f}); {PERSON_DECIDES}"
            )
    return None


def _better(metric: str, value: float, other: float) -> bool:
    """Whether ``value`` is strictly better than ``other`` (False when it is not a number)."""
    return value < other if metric in LOWER_IS_BETTER else value > other


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version the champion alias points at, or None when there is none.

    Raises:
        RegistryError: the registry could not be asked (never taken for "no champion", which
            would let the gate promote a challenger unopposed).
    """
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:
            return None
        raise _unreachable(error) from error


def compare_with_champion(
    champion: LoadedModel | None,
    export: Export,
    test: ExampleSet,
    challenger_probability: np.ndarray,
    features: FeatureConfig,
    config: PromotionConfig,
) -> GateDecision:
    """Score the champion on the challenger's test window and apply the gate.

    Both models are compared on the test examples the champion was not fitted on: those
    scored after the start of its own test window (``training.split.fitted_through``), so
    a champion trained on a later export is not graded on its own training or validation
    examples. The champion predicts them with its own feature settings. A champion trained
    for another target or horizon, one that records no test window, or one fitted on the
    whole test window is never replaced automatically: a person decides (``srl promote``).
    """
    assert test.labels is not None
    own_value = score_metrics(test.labels.target, challenger_probability)[config.metric]
    if champion is None:
        return GateDecision(
            True,
            "no champion yet",
            config.metric,
            config.margin,
            own_value,
            compared_examples=len(test),
        )
    through = fitted_through(champion.model.metadata)
    refusal = _left_to_a_person(champion, features, test, through)
    if refusal is not None:
        return GateDecision(
            False, refusal, config.metric, config.margin, own_value, champion.version
        )
    assert through is not None, "a champion without a test window is left to a person"
    fresh = ~seen_in_fitting(test.keys, through)
    compared = test.take(fresh)
    decision = _compare(champion, export, compared, challenger_probability[fresh], features, config)
    return _with_left_out(decision, len(test) - len(compared), through)


def _left_to_a_person(
    champion: LoadedModel, features: FeatureConfig, test: ExampleSet, through: pd.Timestamp | None
) -> str | None:
    """Why the gate cannot compare the two models fairly, or None when it can."""
    settings, version = champion.model.config, champion.version
    if settings.question != features.question:
        return f"champion {version} predicts {settings.question}; {PERSON_DECIDES}"
    if through is None:
        return (
            f"champion {version} records no test window, so which test examples it was "
            f"trained or calibrated on is unknown; {PERSON_DECIDES}"
        )
    if not seen_in_fitting(test.keys, through).all():
        return None
    return (
        f"champion {version} may have been trained or calibrated on every example of this "
        f"run's test window (it was fitted on examples scored up to {moment_text(through)}), "
        f"so no example is left to compare the two fairly; {PERSON_DECIDES}"
    )


def _compare(
    champion: LoadedModel,
    export: Export,
    test: ExampleSet,
    challenger_probability: np.ndarray,
    features: FeatureConfig,
    config: PromotionConfig,
) -> GateDecision:
    """The gate's verdict on ``test``, examples both models are scored on."""
    assert test.labels is not None
    rows, champion_probability = _champion_scores(champion, export, test, features)
    labels = test.labels.target[rows]
    mine = score_metrics(labels, challenger_probability[rows])[config.metric]
    theirs = score_metrics(labels, champion_probability)[config.metric]
    promoted = beats(config.metric, mine, theirs, config.margin)
    verdict = "beats" if promoted else "does not beat"
    return GateDecision(
        promoted,
        f"challenger {verdict} champion {champion.version} on {config.metric} "
        f"({mine:.4f} vs {theirs:.4f}, margin {config.margin})",
        config.metric,
        config.margin,
        mine,
        champion.version,
        theirs,
        len(rows),
    )


def _with_left_out(decision: GateDecision, left_out: int, through: pd.Timestamp) -> GateDecision:
    """The decision, its reason saying how many test examples the champion may have seen."""
    if left_out == 0:
        return decision
    noun = "example" if left_out == 1 else "examples"
    note = (
        f" on the {decision.compared_examples:,} test examples scored after "
        f"{moment_text(through)}; {left_out:,} earlier {noun}, which the champion may have "
        "been trained or calibrated on, were left out"
    )
    return replace(decision, reason=decision.reason + note)


def _champion_scores(
    champion: LoadedModel, export: Export, test: ExampleSet, features: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The champion's probabilities for the test examples it can score, and their rows.

    With the same feature settings the champion scores the test features as built; with
    other settings its own features are built for the same (rejection, as_of) pairs.
    """
    if champion.model.config == features:
        return np.arange(len(test)), champion.model.predict_set(test)
    theirs = build_training_set(export, champion.model.config)
    keys = ["rejection_id", "as_of"]
    position = theirs.keys[keys].reset_index().merge(test.keys[keys].reset_index(), on=keys)
    rows = position["index_y"].to_numpy()
    selected = theirs.take(position["index_x"].to_numpy())
    return rows, champion.model.predict_set(selected)


def record_training(
    client: MlflowClient, name: str, version: str, tags: dict[str, str], decision: GateDecision
) -> None:
    """Tag the new version, make it challenger, and champion if the gate says so."""
    for key, value in {**tags, **decision.tags()}.items():
        client.set_model_version_tag(name, version, key, value[:MAX_TAG_LENGTH])
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promoted:
        _move_champion(client, name, version, "gate", decision.reason)


def promote(name: str, version: str, reason: str = "manual promotion") -> dict[str, Any]:
    """Make ``version`` champion by hand (recorded on the version).

    Raises:
        RegistryError: there is no registry, the version does not exist, or its training
            run did not finish (``unfinished_run``).
    """
    client = existing_registry_client(name)
    canonical = _require_version(client, name, version)
    unfinished = unfinished_run(client, name, canonical)
    if unfinished is not None:
        raise RegistryError(unfinished)
    return _move_champion(client, name, canonical, "manual", reason)


def unfinished_run(client: MlflowClient, name: str, version: str) -> str | None:
    """Why ``version`` must not be promoted when the run that logged it did not finish
    (failed, killed, or still running: its test results and gate verdict may never have
    been recorded), or None. A version registered without a run, or whose run was
    deleted, is the registrant's to vouch for."""
    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        return None
    try:
        status = client.get_run(run_id).info.status
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:  # the run was deleted for good
            return None
        raise _unreachable(error) from error
    if status == "FINISHED":
        return None
    return (
        f"{name} version {version} comes from run {run_id}, which did not finish "
        f"({status}): its evaluation and gate verdict may never have been recorded; train "
        "again, or wait for the run to end"
    )


def rollback(name: str, reason: str = "rollback") -> dict[str, Any]:
    """Give the champion alias back to the version it replaced (recorded on both).

    Raises:
        RegistryError: there is no registry or no champion, or no earlier champion was
            recorded.
    """
    client = existing_registry_client(name)
    current = champion_version(client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    details = client.get_model_version(name, current)
    previous = details.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(f"{name} version {current} replaced no earlier champion")
    previous = _require_version(client, name, previous)
    if previous == current:
        raise RegistryError(
            f"{name} version {current} is recorded as the champion it replaced; promote the "
            "version to restore by hand (srl promote VERSION)"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    event = _event("rolled back", reason, previous_champion=current)
    _append_history(client, name, current, {**event, "action": "rolled back from"})
    _append_history(client, name, previous, {**event, "action": "restored by rollback"})
    _stamp(client, name, current, "rolled_back", event)
    _stamp(client, name, previous, "restored", event)
    return {"name": name, "champion": previous, "replaced": current, **event}


def _move_champion(
    client: MlflowClient, name: str, version: str, how: str, reason: str
) -> dict[str, Any]:
    """Move the champion alias to ``version``, recording the version it replaced first: a
    failure between the two calls leaves the alias where it was rather than a champion
    that cannot be rolled back (MLflow moves an alias in one call, but has no transaction
    across calls)."""
    previous = champion_version(client, name)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    event = _event(f"promoted ({how})", reason, previous_champion=previous)
    _stamp(client, name, version, "promoted", event)
    _append_history(client, name, version, event)
    return {"name": name, "champion": version, "replaced": previous, **event}


def _event(action: str, reason: str, previous_champion: str | None) -> dict[str, Any]:
    return {
        "action": action,
        "reason": reason,
        "by": _actor(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "previous_champion": previous_champion,
    }


def _stamp(
    client: MlflowClient, name: str, version: str, prefix: str, event: dict[str, Any]
) -> None:
    for key in ("at", "by", "reason"):
        client.set_model_version_tag(name, version, f"{prefix}_{key}", str(event[key]))


def _append_history(client: MlflowClient, name: str, version: str, event: dict[str, Any]) -> None:
    tags = client.get_model_version(name, version).tags
    history = json.loads(tags.get(HISTORY_TAG, "[]"))
    history.append(event)
    text = json.dumps(history)
    while len(text) > MAX_TAG_LENGTH and len(history) > 1:
        history.pop(0)
        text = json.dumps(history)
    client.set_model_version_tag(name, version, HISTORY_TAG, text)


def _require_version(client: MlflowClient, name: str, version: str) -> str:
    """The registry's own spelling of ``version`` (``02`` and `` 2`` are version ``2``).

    Raises:
        RegistryError: there is no such version, or the registry could not be asked.
    """
    try:
        return str(client.get_model_version(name, str(version).strip()).version)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:
            raise RegistryError(f"{name} has no version {version.strip()}") from error
        raise _unreachable(error) from error


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every version with its aliases, run, what it predicts (``reconverted within 365
    days``; None for a version registered before this was recorded), headline test metrics
    and gate verdict.

    Raises:
        RegistryError: there is no registry, or the name cannot be listed.
    """
    client = existing_registry_client(name)
    try:
        aliases = client.get_registered_model(name).aliases or {}
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as error:
        raise RegistryError(f"cannot list {name}: {error_summary(error)}") from error
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = [_version_row(v, by_version.get(str(v.version), [])) for v in versions]
    return sorted(rows, key=lambda row: -int(row["version"]))


def _version_row(version: Any, aliases: list[str]) -> dict[str, Any]:
    tags = dict(version.tags or {})
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    metrics = {
        k.removeprefix("test."): _number(v) for k, v in tags.items() if k.startswith("test.")
    }
    return {
        "version": str(version.version),
        "aliases": sorted(aliases),
        "created": created.isoformat(timespec="seconds"),
        "run_id": version.run_id,
        "metrics": metrics,
        "predicts": tags.get("predicts"),
        "gate": tags.get("gate.reason"),
    }


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
