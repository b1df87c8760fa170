"""How well a model's probabilities hold by the age of the rejection, on examples it was
never fitted on.

Every rejection of the export is re-scored at ``--ages`` days after it (while still open),
and the examples scored after the start of the model's test window whose label is observed
are kept (none was fitted on). Per age band, the table gives the share that came back and
the model's mean probability, with its age curve and without it (the same model with the
curve left out of its metadata).

    .venv/bin/python benchmarks/age_calibration.py --data EXPORT --model MODEL_DIR
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from features.dataset import build_training_set, uncensored
from features.loading import load_export
from features.predictor import ReconversionModel
from training.split import fitted_through

DEFAULT_AGES = (0, 30, 90, 180, 270, 365, 450, 540, 630, 730, 820, 910, 1000)
BANDS = ((0, 0), (30, 30), (90, 90), (180, 180), (270, 365), (450, 630), (730, 1000))


def without_curve(model: ReconversionModel) -> ReconversionModel:
    """The same model with no age curve: its probabilities as before curves existed."""
    metadata = {k: v for k, v in model.metadata.items() if k != "age_curve"}
    return dataclasses.replace(model, metadata=metadata)


def table(export_dir: Path, model_dir: Path, ages: tuple[int, ...]) -> pd.DataFrame:
    """Per age band: examples, share that came back, mean probability with and without."""
    model = ReconversionModel.load(model_dir)
    config = model.config.model_copy(update={"rescore_offsets_days": ages})
    examples = uncensored(build_training_set(load_export(export_dir), config))
    cut = fitted_through(model.metadata)
    if cut is None:
        raise SystemExit(f"{model_dir}: the model records no test window")
    unseen = examples.take((examples.keys["as_of"] > cut).to_numpy())
    assert unseen.labels is not None
    with_curve = model.predict_features(unseen.features)
    plain = without_curve(model).predict_features(unseen.features)
    offsets = unseen.keys["offset_days"].to_numpy()
    rows = []
    for low, high in BANDS:
        chosen = (offsets >= low) & (offsets <= high)
        if not chosen.any():
            continue
        rows.append(
            {
                "days since the rejection": f"{low}" if low == high else f"{low} to {high}",
                "examples": int(chosen.sum()),
                "came back": float(np.mean(unseen.labels.target[chosen])),
                "mean p, age curve": float(np.mean(with_curve[chosen])),
                "mean p, no curve": float(np.mean(plain[chosen])),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    """Print the table as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="An export directory.")
    parser.add_argument("--model", type=Path, required=True, help="A saved model directory.")
    parser.add_argument("--ages", type=int, nargs="+", default=DEFAULT_AGES)
    args = parser.parse_args()
    frame = table(args.data, args.model, tuple(sorted(set(args.ages))))
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---:|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
