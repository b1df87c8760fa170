"""Training benchmark: ``srl train`` without tuning on a generated export.

    .venv/bin/python benchmarks/train_bench.py --leads 100000

Generates the export (not timed), then runs the whole training job in a child process:
load and validate, build examples, split, train LightGBM, calibrate, fit the baselines,
evaluate, draw and log the plots, log and register the model and apply the gate, into a
fresh MLflow sqlite store. Prints the wall time of each step, the total and the child's
peak resident memory as Markdown.

``OMP_WAIT_POLICY=PASSIVE`` is set for the child unless already set: LightGBM's OpenMP
threads then sleep instead of spinning while they wait, which matters on a busy machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEP = re.compile(r"step=(\w+)")


class StepClock(logging.Handler):
    """Records when each ``step=...`` log line of ``training.train`` is emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = STEP.search(record.getMessage())
        if match:
            self.marks.append((match.group(1), time.perf_counter()))


def run_child(export_dir: Path, store: Path) -> dict[str, object]:
    """Train once in this process and return the figures."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.environ["SRL_ARTIFACT_ROOT"] = str(store / "artifacts")
    clock = StepClock()
    logging.getLogger("training.train").addHandler(clock)
    logging.getLogger("training.train").setLevel(logging.INFO)
    started = time.perf_counter()
    from training.config import TrainingConfig
    from training.train import train

    config = TrainingConfig()
    result = train(export_dir, config)
    finished = time.perf_counter()
    marks = [("import_and_load_export", started), *clock.marks, ("end", finished)]
    steps = {name: later - at for (name, at), (_, later) in itertools.pairwise(marks)}
    overall = result.evaluation.report["overall"]
    return {
        "total_s": finished - started,
        "steps_s": steps,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "threads": config.lightgbm.resolved_threads(),
        "examples": result.split,
        "best_iteration": result.model.metadata["best_iteration"],
        "roc_auc": overall["roc_auc"],
        "pr_auc": overall["pr_auc"],
        "ece": overall["ece"],
        "logistic_roc_auc": result.evaluation.baselines["logistic"]["overall"]["roc_auc"],
        "summary": result.evaluation.summary,
    }


def main() -> None:
    """Generate the export, train in a child process and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--export", type=Path, help="reuse this export instead of generating")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.store)))
        return
    with tempfile.TemporaryDirectory(prefix="srl-train-bench-") as scratch:
        workdir = Path(scratch)
        export_dir = args.export or _generate(workdir / "export", args.leads, args.seed)
        figures = _train_in_child(export_dir, workdir / "store")
    _print(args.leads, figures)


def _generate(out: Path, leads: int, seed: int) -> Path:
    from features.synthetic import generate_export

    generate_export(out, leads, seed, "parquet")
    return out


def _train_in_child(export_dir: Path, store: Path) -> dict[str, object]:
    store.mkdir(parents=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    command = [sys.executable, __file__, "--child", str(export_dir), "--store", str(store)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - started
    return figures


def _print(leads: int, figures: dict[str, object]) -> None:
    steps = figures["steps_s"]
    assert isinstance(steps, dict)
    print(f"## Training benchmark: {leads:,} leads, {figures['threads']} LightGBM threads\n")
    print("| step | seconds |\n|---|---:|")
    for name, seconds in steps.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **total (in process)** | **{figures['total_s']:.1f}** |")
    print(f"| total (process, with interpreter start) | {figures['process_s']:.1f} |")
    print(f"\npeak RSS: {figures['peak_rss_gb']:.2f} GB")
    print(f"best iteration: {figures['best_iteration']}")
    print(
        f"test ROC-AUC {figures['roc_auc']:.4f} (logistic {figures['logistic_roc_auc']:.4f}), "
        f"PR-AUC {figures['pr_auc']:.4f}, ECE {figures['ece']:.4f}"
    )
    print(f"split: {json.dumps(figures['examples'])}")
    print(figures["summary"])


if __name__ == "__main__":
    main()
