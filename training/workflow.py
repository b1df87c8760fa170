"""One call for scripts and the demo: train on an export, register, apply the gate."""

from __future__ import annotations

from pathlib import Path

from training.config import load_training_config
from training.train import train


def train_register_and_gate(data: str | Path, config: str | Path | None = None) -> str:
    """Train with the given (or default) config and say what happened in one line.

    Returns:
        For example ``"srl-reconversion version 3 is champion (no champion yet): Scoring
        the top 20% ..."``.
    """
    settings = load_training_config(config)
    result = train(data, settings)
    decision = result.decision
    role = "champion" if decision is not None and decision.promoted else "challenger"
    why = f" ({decision.reason})" if decision is not None else ""
    return (
        f"{settings.registered_model_name} version {result.version} is {role}{why}: "
        f"{result.evaluation.summary}"
    )
