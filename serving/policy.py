"""The routing policy: a versioned YAML file owned by marketing operations, validated on load."""

from __future__ import annotations

import re
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from features.catalogue import feature_specs
from features.config import FeatureConfig
from features.contract import CONSENT_STATUSES, NO_CONTACT_CONSENT, NO_CONTACT_REASONS, REASON_CODES
from features.problems import shorten
from features.yaml_files import (
    YamlSettings,
    not_utf8,
    parse_yaml,
    read_settings_text,
    yaml_problem,
)

DEFAULT_POLICY = "default.yaml"
#: The program of every suppressed lead; no route of a policy may take the name.
SUPPRESSED_PROGRAM = "suppressed"
#: The consent of a lead with no consent row: never one a policy may suppress.
SUBSCRIBED = "subscribed"
#: The longest wait a policy may set (ten years): a next-action date stays a real date.
MAX_DAYS = 3650


def _program_name(name: str) -> str:
    if name.casefold() == SUPPRESSED_PROGRAM:
        raise ValueError(f"program name {SUPPRESSED_PROGRAM!r} is reserved for suppressed leads")
    return name


#: A name the CRM receives: no blank one, no space at either end (a CRM compares exactly).
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(?:.*\S)?$")]
Program = Annotated[Name, AfterValidator(_program_name)]
Days = Annotated[int, Field(gt=0, le=MAX_DAYS)]


class _Frozen(YamlSettings):
    """A frozen policy model: no infinity or NaN either (``features.yaml_files.YamlSettings``)."""

    model_config = ConfigDict(allow_inf_nan=False)  # merged with YamlSettings' own


class Tier(_Frozen):
    """A probability band with a name and a work priority (1 is most urgent)."""

    name: Name
    min_probability: float = Field(ge=0.0, le=1.0)
    priority: int = Field(ge=1, le=9)


class Suppression(_Frozen):
    """Consent states and rejection reasons that forbid any contact, whatever the score."""

    consent: tuple[str, ...] = tuple(sorted(NO_CONTACT_CONSENT))
    reasons: tuple[str, ...] = tuple(sorted(NO_CONTACT_REASONS))

    @model_validator(mode="after")
    def _never_weaker_than_the_contract(self) -> Suppression:
        missing_consent = NO_CONTACT_CONSENT - set(self.consent)
        missing_reasons = NO_CONTACT_REASONS - set(self.reasons)
        if missing_consent or missing_reasons:
            raise ValueError(
                "suppression must always include consent "
                f"{sorted(NO_CONTACT_CONSENT)} and reasons {sorted(NO_CONTACT_REASONS)}; "
                f"missing {sorted(missing_consent | missing_reasons)}"
            )
        unknown = (set(self.consent) - set(CONSENT_STATUSES)) | (
            set(self.reasons) - set(REASON_CODES)
        )
        if unknown:
            raise ValueError(f"unknown consent statuses or reasons: {sorted(unknown)}")
        if SUBSCRIBED in self.consent:
            raise ValueError(
                f"consent {SUBSCRIBED!r} cannot be suppressed: it is the consent of every "
                "lead that never opted out, so no lead could be contacted"
            )
        return self


class Rebound(_Frozen):
    """When a lead goes straight back to sales."""

    program: Program = "rebound_to_sales"
    min_probability: float = Field(ge=0.0, le=1.0)
    recent_intent_feature: str = "intent_30d"
    min_recent_intent: float = Field(default=1, gt=0)
    follow_up_due_min_probability: float = Field(ge=0.0, le=1.0)
    follow_up_due_within_days: float = Field(default=14, ge=0, le=MAX_DAYS)
    follow_up_overdue_max_days: float = Field(default=90, ge=0, le=MAX_DAYS)


class LowTouch(_Frozen):
    """The long-term, low-touch track for the lowest scores.

    With ``beyond_trained_age``, it also takes the leads whose rejection is older than any
    the model was trained on (their probability is an extrapolation, and runs high) unless
    they show recent intent or a due follow-up, the signals that do not come from the model.
    """

    program: Program = "low_touch_nurture"
    max_probability: float = Field(ge=0.0, le=1.0)
    cadence_days: Days
    beyond_trained_age: bool = False


#: The next actions that read each timing setting of a reason (``cadence_days`` is read by
#: all: it is the fallback when a dated contact has none).
USED_BY: dict[str, tuple[str, ...]] = {
    "lead_days": ("fiscal_year", "renewal"),
    "renewal_days": ("renewal",),
}


class ReasonRoute(_Frozen):
    """The nurture program for one rejection reason and how its next contact is timed."""

    program: Program
    next_action: Literal["follow_up", "fiscal_year", "renewal", "cadence"] = "cadence"
    cadence_days: Days = 30
    lead_days: int = Field(default=30, ge=0, le=MAX_DAYS)
    renewal_days: Days = 365

    @model_validator(mode="after")
    def _no_setting_its_timing_ignores(self) -> ReasonRoute:
        # Only a value other than the default is a setting (a whole dump holds them all)
        ignored = sorted(
            name
            for name, used_by in USED_BY.items()
            if self.next_action not in used_by
            and getattr(self, name) != type(self).model_fields[name].default
        )
        if ignored:
            uses = "; ".join(f"{n} is used by {_listed(list(USED_BY[n]))}" for n in ignored)
            raise ValueError(
                f"next_action {self.next_action!r} does not use {_listed(ignored)} ({uses}): "
                "remove it, or choose the next_action it was meant for"
            )
        return self

    @field_validator("renewal_days")
    @classmethod
    def _renewal_after_its_lead_time(cls, renewal_days: int, info: ValidationInfo) -> int:
        lead_days = info.data.get("lead_days")
        if lead_days is not None and lead_days >= renewal_days:
            raise ValueError(
                f"must be more than lead_days ({lead_days}): every lead would be due now"
            )
        return renewal_days


class RoutingPolicy(_Frozen):
    """The whole policy; see ``serving/policies/default.yaml`` for the annotated default."""

    version: int = Field(ge=1)
    name: Name
    fiscal_year_start: str = "01-01"
    tiers: tuple[Tier, ...]
    suppression: Suppression = Field(default_factory=Suppression)
    rebound: Rebound
    low_touch: LowTouch
    reasons: dict[str, ReasonRoute]

    @field_validator("fiscal_year_start", mode="before")
    @classmethod
    def _a_day_of_every_year(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _MONTH_DAY.fullmatch(value):
            raise ValueError(
                'must be a month and a day, MM-DD in quotes ("04-01" for a fiscal year that '
                "starts on 1 April): a fiscal year starts on the same day every year"
            )
        month, day = (int(part) for part in value.split("-"))
        try:
            date(2001, month, day)  # a year without 29 February
        except ValueError:
            raise ValueError(
                f"{value!r} is not a day of every year (MM-DD; 02-29 comes once in four years)"
            ) from None
        return value

    @property
    def fiscal_month_day(self) -> tuple[int, int]:
        """The month and the day each fiscal year starts on (``fiscal_year_start``)."""
        month, day = self.fiscal_year_start.split("-")
        return int(month), int(day)

    @field_validator("tiers")
    @classmethod
    def _tiers_descend_to_zero(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        cut_offs = [t.min_probability for t in tiers]
        if (
            not tiers
            or cut_offs != sorted(cut_offs, reverse=True)
            or len(set(cut_offs)) != len(cut_offs)
        ):
            raise ValueError(
                "tiers must be listed from highest to lowest distinct min_probability: "
                + _listed([f"{t.name} {t.min_probability:g}" for t in tiers])
            )
        if cut_offs[-1] != 0.0:
            raise ValueError("the last tier must start at min_probability 0.0")
        names = [t.name for t in tiers]
        if len({name.casefold() for name in names}) != len(names):
            raise ValueError(f"tier names must differ: {_listed(names)}")
        priorities = [t.priority for t in tiers]
        if priorities != sorted(priorities):
            raise ValueError(
                "tier priority numbers must not decrease down the list (1 is the most "
                f"urgent, so a lower tier is never more urgent): {_listed(priorities)}"
            )
        return tiers

    @field_validator("reasons")
    @classmethod
    def _every_reason_routed(
        cls, reasons: dict[str, ReasonRoute], info: ValidationInfo
    ) -> dict[str, ReasonRoute]:
        unknown = set(reasons) - set(REASON_CODES)
        if unknown:
            raise ValueError(f"unknown reasons in the policy: {_listed(sorted(unknown))}")
        suppression = info.data.get("suppression")
        if suppression is None:  # refused itself: its own error says why
            return reasons
        unrouted = set(REASON_CODES) - set(reasons) - set(suppression.reasons)
        if unrouted:
            raise ValueError(f"reasons with neither a program nor suppression: {sorted(unrouted)}")
        both = set(reasons) & set(suppression.reasons)
        if both:
            raise ValueError(
                f"reasons {sorted(both)} are suppressed (suppression.reasons), so no program may "
                "be given to them: a suppressed lead is never routed; remove them here"
            )
        return reasons

    @model_validator(mode="after")
    def _sections_agree(self) -> RoutingPolicy:
        # Back to sales is decided first, so an overlap is not unreachable; but a score at
        # or above rebound.min_probability is one the policy calls good odds, and sending
        # it to the low-touch track whenever the lead showed no recent intent buries the
        # policy's best leads (the follow-up cut-off applies to due follow-ups only).
        if self.low_touch.max_probability > self.rebound.min_probability:
            raise ValueError(
                f"low_touch.max_probability ({self.low_touch.max_probability}) is above "
                f"rebound.min_probability ({self.rebound.min_probability}): a score the policy "
                "calls good enough for sales cannot also be one of the lowest"
            )
        own = {"rebound.program": self.rebound.program, "low_touch.program": self.low_touch.program}
        taken = {route.program.casefold() for route in self.reasons.values()}
        if self.rebound.program.casefold() == self.low_touch.program.casefold():
            raise ValueError("rebound.program and low_touch.program must differ")
        for field_name, program in own.items():
            if program.casefold() in taken:
                raise ValueError(
                    f"{field_name} {program!r} is also a reason's program: the CRM could not "
                    "tell the two routes apart"
                )
        return self

    @property
    def label(self) -> str:
        """``name@version``, returned with every routing decision."""
        return f"{self.name}@v{self.version}"


#: ``fiscal_year_start``'s form: two digits of month, two of day.
_MONTH_DAY = re.compile(r"[0-9]{2}-[0-9]{2}")


def _listed(values: list[Any], shown: int = 10) -> str:
    """The first ``shown`` values, then how many more: an error stays one readable line."""
    more = f" and {len(values) - shown} more" if len(values) > shown else ""
    return f"{[shorten(v, 40) if isinstance(v, str) else v for v in values[:shown]]}{more}"


def load_policy(path: str | Path | None = None) -> RoutingPolicy:
    """Read and validate a routing policy YAML (the packaged default when ``path`` is None)."""
    if path is None:
        text = resources.files("serving.policies").joinpath(DEFAULT_POLICY).read_text("utf-8")
    else:
        text = read_settings_text(path)
    return RoutingPolicy.model_validate(parse_yaml(text) or {})


class PolicyError(Exception):
    """A routing policy that cannot be read, is invalid, or does not fit the model; the
    message names the file or policy and the settings at fault."""


def read_policy(path: str | Path | None = None) -> RoutingPolicy:
    """``load_policy``, every failure a ``PolicyError`` naming the file and the settings.

    Raises:
        PolicyError: the file cannot be read, is not YAML, or breaks a rule of the policy.
    """
    where = policy_source(path)
    try:
        return load_policy(path)
    except ValidationError as error:
        errors = error.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in errors[:10]
        )
        more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise PolicyError(f"routing policy {where} is invalid: {problems}{more}") from error
    except OSError as error:  # the file is named already: its reason alone
        reason = error.strerror or str(error)
        raise PolicyError(f"routing policy {where} could not be read: {reason}") from error
    except UnicodeDecodeError as error:
        raise PolicyError(f"routing policy {where} is {not_utf8(error)}") from error
    except yaml.YAMLError as error:
        reason = yaml_problem(error)
        raise PolicyError(f"routing policy {where} could not be read: {reason}") from error


def policy_source(path: str | Path | None) -> str:
    """How errors name a policy file: its path, or the packaged default."""
    return str(path) if path is not None else "the packaged default"


def check_policy_features(
    policy: RoutingPolicy, config: FeatureConfig, path: str | Path | None, model: str = "this model"
) -> None:
    """Refuse a policy that reads a feature the model's configuration does not compute.

    Args:
        policy: the policy read from ``path``.
        config: the feature configuration of the model it will route for.
        path: the policy's file (None for the packaged default), named in the error.
        model: how the error names the model.

    Raises:
        PolicyError: naming the file, the policy setting and the feature.
    """
    feature = policy.rebound.recent_intent_feature
    counts = recent_activity_counts(config)
    if feature not in counts or since_rejection_count(feature) not in counts:
        raise PolicyError(
            f"routing policy {policy_source(path)} ({policy.label}): "
            f"rebound.recent_intent_feature {feature!r} is not a count of activities over "
            f"a window ending at as_of of {model} (such as intent_30d, demo_request_90d, "
            "intent_since_rejection or intent_total; routing counts only its part after "
            "the rejection) (see docs/feature-catalogue.md)"
        )


def since_rejection_count(feature: str) -> str:
    """The count of the same activities since the rejection (``demo_request_90d`` to
    ``demo_request_since_rejection``, ``intent_total`` to ``intent_since_rejection``)."""
    return WINDOW_SUFFIX.sub("_since_rejection", feature)


#: The window part of an activity count's name.
WINDOW_SUFFIX = re.compile(r"_(?:[0-9]+d|total|since_rejection)$")


def recent_activity_counts(config: FeatureConfig) -> set[str]:
    """The features that count activities over a window ending at ``as_of``: the ones a
    rebound can read recent intent from, as the lesser of one and the count of the same
    activities since the rejection is then its count after the rejection (one window holds
    the other)."""
    return {
        spec.name
        for spec in feature_specs(config)
        if spec.kind == "numeric"
        and spec.source == "activities"
        and (DAYS_BEFORE_AS_OF.fullmatch(spec.window) or spec.window in ENDING_AT_AS_OF)
    }


#: A window of the last N days (not a trend, which compares two windows).
DAYS_BEFORE_AS_OF = re.compile(r"[0-9]+ days before as_of")
#: Windows that end at ``as_of`` besides the ``N days before as_of`` ones.
ENDING_AT_AS_OF = frozenset({"since the rejection", "all history to as_of"})


def idle_rules(policy: RoutingPolicy, trained_age_days: float | None) -> list[str]:
    """Why some of ``policy``'s rules can route nothing for a model that records
    ``trained_age_days`` (None: a model trained before the ages were recorded); empty when
    every rule can apply. Logged as warnings: the policy still serves."""
    if policy.low_touch.beyond_trained_age and trained_age_days is None:
        return [
            f"{policy.label}: low_touch.beyond_trained_age routes nothing with this model, "
            "which records no trained ages (it was trained before they were recorded): "
            "retrain it, so that leads older than it knows stop being routed on their "
            "probability alone"
        ]
    return []


def _rules(policy: RoutingPolicy) -> dict[str, Any]:
    """What routes leads: the policy with its suppression lists as sets (their order is not
    a rule)."""
    rules = policy.model_dump()
    rules["suppression"] = {key: sorted(values) for key, values in rules["suppression"].items()}
    return rules


def check_policy_change(
    serving: RoutingPolicy | None, loaded: RoutingPolicy, path: str | Path | None
) -> None:
    """Refuse a policy whose rules differ from the serving one's under the same
    ``name@version``: every routed lead names its policy, and one label would then stand
    for two sets of rules. Going back to an earlier version, or to the same file
    unchanged (or only reordered where order means nothing), is fine. Each process checks
    against what it serves itself: a restarted service (or worker) has nothing to compare.

    Raises:
        PolicyError: naming the file and the label to raise.
    """
    if serving is None or serving.label != loaded.label or _rules(serving) == _rules(loaded):
        return
    raise PolicyError(
        f"routing policy {policy_source(path)} changed but is still {loaded.label}, the "
        "label of the rules serving now: raise version on every change, so that each routed "
        "lead names the rules that routed it"
    )
