"""Feature and label settings: validated, frozen, and carried inside every model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from features.contract import ACTIVITY_TYPES, LEADS, PRODUCT_FITS, is_personal_name
from features.example_columns import EXAMPLE_KEY_COLUMNS, LABEL_COLUMNS
from features.normalise import normalise_value
from features.yaml_files import (
    YamlSettings,
    not_utf8,
    parse_yaml,
    read_settings_text,
    yaml_problem,
)

DEFAULT_BEHAVIOUR_POINTS: dict[str, float] = {
    "meeting_decision_maker": 5,
    "meeting_recommender": 3,
    "meeting_influencer": 1,
    "spec_provided": 5,
    "funding_confirmed": 5,
    "budget_approved": 3,
    "references_contacted": 5,
    "references_requested": 1,
    "onsite_demo": 5,
    "online_demo": 1,
}


class _Frozen(YamlSettings):
    """A frozen settings model (``features.yaml_files.YamlSettings``)."""


def _only_known(values: Iterable[str], allowed: tuple[str, ...], what: str) -> None:
    """Raise naming every value of ``values`` that is not in ``allowed``."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what}: {unknown}")


class PointsConfig(_Frozen):
    """The classic points score: fit points plus behaviour points, and its qualification rule.

    Attributes:
        behaviour: points per activity type, counted for every occurrence up to ``as_of``.
        target_verticals: industries the vendor targets (compared lower-cased).
        expertise_verticals: target verticals where the vendor also has domain expertise.
        vertical_with_expertise: fit points for a target vertical with domain expertise.
        vertical_without_expertise: fit points for a target vertical without it.
        product_fit: fit points per ``product_fit`` value.
        qualification_min_points: the rule's points threshold.
        qualification_requires: activity types that must each have occurred at least once.
        qualification_requires_target_vertical: the rule also needs a target vertical.
    """

    behaviour: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_BEHAVIOUR_POINTS))
    target_verticals: tuple[str, ...] = (
        "software",
        "financial services",
        "healthcare",
        "manufacturing",
        "retail",
        "telecommunications",
    )
    expertise_verticals: tuple[str, ...] = ("software", "financial services")
    vertical_with_expertise: float = 10
    vertical_without_expertise: float = 5
    product_fit: dict[str, float] = Field(
        default_factory=lambda: {"ideal": 10.0, "customization": 5.0, "major_investment": 0.0}
    )
    qualification_min_points: float = 20
    qualification_requires: tuple[str, ...] = ("funding_confirmed", "onsite_demo")
    qualification_requires_target_vertical: bool = True

    @field_validator("behaviour")
    @classmethod
    def _known_activity_types(cls, value: dict[str, float]) -> dict[str, float]:
        _only_known(value, ACTIVITY_TYPES, "activity types in behaviour points")
        return value

    @field_validator("qualification_requires")
    @classmethod
    def _known_required_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _only_known(value, ACTIVITY_TYPES, "activity types in qualification_requires")
        return value

    @field_validator("product_fit")
    @classmethod
    def _known_fits(cls, value: dict[str, float]) -> dict[str, float]:
        _only_known(value, PRODUCT_FITS, "product_fit values")
        return value

    @field_validator("target_verticals", "expertise_verticals")
    @classmethod
    def _normalise_verticals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = (normalise_value(v) for v in value)
        return tuple(v for v in normalised if v is not None)


class CustomColumns(_Frozen):
    """Extra ``leads`` columns (customers' custom CRM fields) to use as features.

    A name is refused when it marks personal data, is a contract column or is declared
    twice; ``FeatureConfig`` also refuses one named like an engine feature or a column of
    the example table.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _names_usable_as_features(self) -> CustomColumns:
        for name in (*self.numeric, *self.categorical):
            if is_personal_name(name):
                raise ValueError(f"{name!r} is personal data and can never be a feature")
            if name in LEADS.column_names:
                raise ValueError(f"{name!r} is a contract column, not a custom one")
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise ValueError(f"columns declared both numeric and categorical: {sorted(overlap)}")
        repeated = sorted(_repeats(self.numeric) | _repeats(self.categorical))
        if repeated:
            raise ValueError(f"columns declared more than once: {repeated}")
        return self


def _repeats(names: tuple[str, ...]) -> set[str]:
    """The names that occur more than once in ``names``."""
    return {name for name in names if names.count(name) > 1}


#: The label horizon's allowed range in days: the config and every ``--horizon-days``.
MIN_HORIZON_DAYS = 1
MAX_HORIZON_DAYS = 3650

#: How long after the horizon an opportunity may take to close won and still count (a B2B
#: sales cycle).
DEFAULT_WON_CLOSE_DAYS = 180


class FeatureConfig(_Frozen):
    """How examples, labels and features are built.

    Attributes:
        horizon_days: a re-conversion counts if an opportunity is created within this many
            days after ``as_of``.
        target: ``reconverted`` (an opportunity is created) or ``won`` (and it is won).
        won_close_days: for ``won``, such an opportunity counts when it closed won at most
            this many days after the horizon's end (``as_of + horizon_days +
            won_close_days``, the won deadline); one still open then counts as not won. An
            example's ``won`` label is known once its deadline has passed, so censoring
            depends on time alone, never on how a deal is going. 0: won within the horizon.
        rescore_offsets_days: days after the rejection at which training examples are
            taken while the rejection is still open; 0 is scoring at rejection.
        windows_days: engagement look-back windows before ``as_of``.
        points: the classic points score and qualification rule.
        custom_columns: extra lead columns to use as features.
        min_category_count: categories seen fewer times in training are treated as unseen.
        max_categories: at most this many categories are kept per learned categorical.
    """

    horizon_days: int = Field(default=365, ge=MIN_HORIZON_DAYS, le=MAX_HORIZON_DAYS)
    target: Literal["reconverted", "won"] = "reconverted"
    won_close_days: int = Field(default=DEFAULT_WON_CLOSE_DAYS, ge=0, le=MAX_HORIZON_DAYS)
    rescore_offsets_days: tuple[int, ...] = (0, 30, 90, 180, 365)
    windows_days: tuple[int, ...] = (7, 30, 90, 365)
    points: PointsConfig = Field(default_factory=PointsConfig)
    custom_columns: CustomColumns = Field(default_factory=CustomColumns)
    min_category_count: int = Field(default=20, ge=1)
    max_categories: int = Field(default=200, ge=1)

    @field_validator("rescore_offsets_days", "windows_days")
    @classmethod
    def _sorted_unique_non_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v < 0 for v in value):
            raise ValueError("must be a non-empty list of non-negative day counts")
        return tuple(sorted(set(value)))

    @field_validator("windows_days")
    @classmethod
    def _positive_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v == 0 for v in value):
            raise ValueError("engagement windows must be at least one day")
        return value

    @property
    def label_days(self) -> int:
        """How many days after ``as_of`` an example's label looks: the horizon, and for the
        ``won`` target the days a deal has to close after it (the training embargo's
        default, and what two models must share to be compared)."""
        return self.horizon_days + (self.won_close_days if self.target == "won" else 0)

    @property
    def question(self) -> str:
        """What a model trained under these settings predicts, in words."""
        question = f"{self.target} within {self.horizon_days} days"
        if self.target == "won":
            question += f" (closed won within {self.won_close_days} more)"
        return question

    @model_validator(mode="after")
    def _custom_columns_named_apart(self) -> FeatureConfig:
        problems = _custom_column_clashes(self)
        if problems:
            # A ValidationError, unlike a ValueError, keeps each problem's own setting
            # (custom_columns.numeric), under any outer location (features.).
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _custom_column_clashes(config: FeatureConfig) -> list[InitErrorDetails]:
    """A problem for each custom column named like a feature or a column of the example table.

    The engine's own feature names depend on the settings (``windows_days``), so they are
    computed from ``config`` without its custom columns. Each problem names its setting
    (``custom_columns.numeric``) and the column.
    """
    declared = config.custom_columns
    if not (declared.numeric or declared.categorical):
        return []
    taken = _taken_names(config.model_copy(update={"custom_columns": CustomColumns()}))
    return [
        _clash(("custom_columns", kind), name, taken[name])
        for kind in ("numeric", "categorical")
        for name in getattr(declared, kind)
        if name in taken
    ]


def _taken_names(engine_config: FeatureConfig) -> dict[str, str]:
    """Every name a custom column may not take, with what already holds it."""
    from features.catalogue import feature_specs

    taken = dict.fromkeys(EXAMPLE_KEY_COLUMNS, "a key column of the example table")
    taken.update(dict.fromkeys(LABEL_COLUMNS, "a label column of the example table"))
    taken.update(
        (spec.name, "a feature the engine already computes")
        for spec in feature_specs(engine_config)
    )
    return taken


def _clash(setting: tuple[str, str], name: str, holder: str) -> InitErrorDetails:
    problem = f"{name!r} is {holder}"
    return InitErrorDetails(
        type=PydanticCustomError("custom_column_name_taken", "{problem}", {"problem": problem}),
        loc=setting,
        input=name,
    )


def load_feature_config(path: str | Path | None) -> FeatureConfig:
    """Read the feature settings from YAML (the defaults when ``path`` is None).

    The file may hold the feature settings at its top level or, as a training config does,
    under a ``features:`` key.

    Raises:
        ConfigError: naming the file: it cannot be read, is not YAML or not a mapping.
        ValueError: naming the file and every invalid setting.
    """
    if path is None:
        return FeatureConfig()
    data = read_yaml_mapping(path)
    if isinstance(data.get("features"), dict):
        data = data["features"]
    try:
        return FeatureConfig.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"{path}: invalid feature settings: {setting_problems(error)}") from error


def setting_problems(error: ValidationError) -> str:
    """Every invalid setting of a validation error, on one line (``name: why; ...``)."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in error.errors()
    )


class ConfigError(ValueError):
    """A settings file that cannot be read, is not valid YAML or does not hold a mapping;
    the message names the file and why."""


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML settings file (an empty file is an empty mapping).

    Raises:
        ConfigError: naming the file: missing or unreadable, not UTF-8, not valid YAML
            (with the line and column), or not a mapping of names to values.
    """
    source = Path(path)
    try:
        text = read_settings_text(source)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{source}: the settings file could not be read: {reason}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: the settings file is {not_utf8(error)}") from error
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {yaml_problem(error)}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConfigError(f"{source}: holds {kind}, not a mapping of setting names to values")
    return data
