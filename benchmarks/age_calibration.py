"""How well a model's probabilities hold by the age of the rejection, on examples it was
never fitted on (``training.age_report.calibration_by_age``): per age band, the share that
came back and the model's mean probability with its age curve and without it.

    .venv/bin/python benchmarks/age_calibration.py --data EXPORT --model MODEL_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from features.loading import load_export
from features.predictor import ReconversionModel
from training.age_report import REVIEW_AGES, calibration_by_age


def main() -> None:
    """Print the table as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="An export directory.")
    parser.add_argument("--model", type=Path, required=True, help="A saved model directory.")
    parser.add_argument("--ages", type=int, nargs="+", default=REVIEW_AGES)
    args = parser.parse_args()
    model = ReconversionModel.load(args.model)
    try:
        frame = calibration_by_age(load_export(args.data), model, tuple(args.ages))
    except ValueError as error:
        raise SystemExit(f"{args.model}: {error}") from None
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---:|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
