"""Benchmark the batch job end to end: load, features, predict, route, write (no reasons).

Generates exports with about 100k and 1M open rejections (a generated export of N leads has
about 0.33 x N open rejections at its end, so 1M needs about 3M leads), trains a small
model once, then runs ``srl score`` as a subprocess for each size and engine, sampling the
resident memory of the whole process tree (the job, its workers, Spark's JVM and Python
workers). Generation is measured separately. Prints a
Markdown table and writes the figures as JSON.

    python benchmarks/batch_bench.py --work /tmp/srl-bench
    python benchmarks/batch_bench.py --work /tmp/srl-bench --sizes 100000 --engines local,spark

This is a script, not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

OPEN_PER_LEAD = 0.33
TRAIN_LEADS = 20_000
SEED = 17


@dataclass
class Measured:
    """One measured subprocess."""

    seconds: float
    peak_rss_gb: float
    peak_main_rss_gb: float
    returncode: int


def measure(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` to completion, sampling the RSS of its process tree every 0.1 s."""
    started = time.monotonic()
    process = psutil.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                main = process.memory_info().rss
                children = sum(_rss(c) for c in process.children(recursive=True))
            except psutil.NoSuchProcess:
                break
            peaks[0] = max(peaks[0], main + children)
            peaks[1] = max(peaks[1], main)
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = process.wait()
    done.set()
    sampler.join()
    return Measured(time.monotonic() - started, peaks[0] / 1e9, peaks[1] / 1e9, returncode)


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def srl(*arguments: str) -> list[str]:
    """The ``srl`` command line through this interpreter."""
    return [sys.executable, "-m", "srl", *arguments]


def generate(work: Path, leads: int) -> tuple[Path, Measured | None]:
    """A generated export of ``leads`` leads (reused when it already exists)."""
    export = work / f"export-{leads}"
    if (export / "leads.parquet").exists():
        return export, None
    measured = measure(
        srl("generate", "--out", str(export), "--leads", str(leads), "--seed", str(SEED))
    )
    if measured.returncode != 0:
        raise SystemExit(f"generating {leads} leads failed")
    return export, measured


def train_model(work: Path) -> Path:
    """A small LightGBM re-conversion model trained on a generated export (built once)."""
    target = work / "model"
    if (target / "model.json").exists():
        return target
    import lightgbm as lgb

    from features.config import FeatureConfig
    from features.dataset import build_training_set, uncensored
    from features.encoding import CategoryVocabulary
    from features.loading import load_export
    from features.predictor import Calibration, ReconversionModel

    export, _ = generate(work, TRAIN_LEADS)
    config = FeatureConfig()
    examples = uncensored(build_training_set(load_export(export), config))
    vocabulary = CategoryVocabulary.fit(
        examples.features, config.min_category_count, config.max_categories
    )
    categorical = [i for i, s in enumerate(examples.features.specs) if s.kind != "numeric"]
    data = lgb.Dataset(
        vocabulary.encode(examples.features),
        examples.labels.target if examples.labels is not None else None,
        feature_name=examples.features.names,
        categorical_feature=categorical,
    )
    params = {"objective": "binary", "verbose": -1, "num_leaves": 31, "seed": SEED}
    booster = lgb.train(params, data, num_boost_round=200)
    model = ReconversionModel(config, vocabulary, booster, Calibration(), examples.features.names)
    return model.save(target)


def score(work: Path, export: Path, model: Path, engine: str, size: int) -> dict[str, Any]:
    """Run ``srl score`` once and return its measurements and summary."""
    out = work / f"scores-{size}-{engine}.parquet"
    command = srl("score", "--data", str(export), "--out", str(out), "--model", str(model))
    env = {"PYSPARK_SUBMIT_ARGS": "--driver-memory 4g pyspark-shell", "SRL_LOG_LEVEL": "WARNING"}
    measured = measure([*command, "--engine", engine], env)
    summary_path = out.with_name(out.name + ".summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"engine": engine, "size": size, **asdict(measured), "summary": summary}


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| open rejections | leads | engine | rows scored | wall time | peak RSS (tree) | "
        "peak RSS (main) | routing | scoring | writing |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        seconds = r["summary"].get("seconds", {})
        rows = r["summary"].get("scored", {}).get("rows", 0)
        lines.append(
            f"| ~{r['size']:,} | {r['leads']:,} | {r['engine']} | {rows:,} | "
            f"{r['seconds']:.0f} s | {r['peak_rss_gb']:.2f} GB | {r['peak_main_rss_gb']:.2f} GB | "
            f"{_s(seconds, 'partition')} | {_s(seconds, 'scoring')} | {_s(seconds, 'writing')} |"
        )
    return "\n".join(lines)


def _s(seconds: dict[str, float], key: str) -> str:
    return f"{seconds[key]:.0f} s" if key in seconds else "-"


def main() -> None:
    """Parse arguments, run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for exports and outputs")
    parser.add_argument("--sizes", default="100000,1000000", help="open rejections per export")
    parser.add_argument("--engines", default="local,spark", help="local and/or spark")
    arguments = parser.parse_args()
    arguments.work.mkdir(parents=True, exist_ok=True)
    model = train_model(arguments.work)
    results: list[dict[str, Any]] = []
    generation: list[dict[str, Any]] = []
    for size in (int(s) for s in arguments.sizes.split(",")):
        leads = int(round(size / OPEN_PER_LEAD, -3))
        export, made = generate(arguments.work, leads)
        if made is not None:
            generation.append({"leads": leads, **asdict(made)})
            print(
                f"generated {leads:,} leads in {made.seconds:.0f} s, peak {made.peak_rss_gb:.2f} GB"
            )
        for engine in arguments.engines.split(","):
            result = score(arguments.work, export, model, engine, size) | {"leads": leads}
            results.append(result)
            print(
                f"{engine} {size:,}: {result['seconds']:.0f} s, peak {result['peak_rss_gb']:.2f} GB"
            )
    document = {"machine": _machine(), "generation": generation, "runs": results}
    (arguments.work / "batch_bench.json").write_text(json.dumps(document, indent=2))
    print(table(results))


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
