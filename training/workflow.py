"""One call for scripts and the demo: train on an export, register, apply the gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.config import load_training_config
from training.registry import CHAMPION, champion_version, registry_client
from training.train import train


@dataclass(frozen=True)
class Outcome:
    """What one training did to the registry.

    Attributes:
        model_uri: the URI to serve: the champion alias when the new version holds it or an
            earlier champion stands, else the new version itself (the gate refused it and
            there is no champion yet).
        sentence: for example ``"srl-reconversion version 3 is champion (no champion yet):
            Scoring the top 20% ..."``.
    """

    model_uri: str
    sentence: str


def train_register_and_gate(data: str | Path, config: str | Path | None = None) -> Outcome:
    """Train with the given (or default) config, register the model and apply the gate."""
    settings = load_training_config(config)
    result = train(data, settings)
    decision = result.decision
    name = settings.registered_model_name
    promoted = decision is not None and decision.promoted
    role = CHAMPION if promoted else "challenger"
    why = f" ({decision.reason})" if decision is not None else ""
    has_champion = champion_version(registry_client(), name) is not None
    target = f"@{CHAMPION}" if has_champion else f"/{result.version}"
    return Outcome(
        f"models:/{name}{target}",
        f"{name} version {result.version} is {role}{why}: {result.evaluation.summary}",
    )
