"""Feature-building benchmark: wall time and peak memory for generated exports.

Each size runs in its own process so that peak memory is that size's alone:

    .venv/bin/python benchmarks/features_bench.py --sizes 10000 100000 1000000

Per size it generates an export (Parquet, in a process of its own), then, in a fresh
process, loads and validates it and builds every training example with its features and
labels; peak RSS is that second process's. It prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(leads: int, workdir: Path) -> float:
    """Generate one export (in its own process, so its memory is not counted below)."""
    from features.synthetic import generate_export

    started = time.perf_counter()
    generate_export(workdir / f"export-{leads}", leads, 7, "parquet")
    return time.perf_counter() - started


def run_one(leads: int, workdir: Path) -> dict[str, float]:
    """Load and featurise one generated export in this process; return the figures."""
    from features.config import FeatureConfig
    from features.dataset import build_training_set
    from features.loading import load_export

    export_dir = workdir / f"export-{leads}"
    generated = time.perf_counter()
    export = load_export(export_dir)
    loaded = time.perf_counter()
    examples = build_training_set(export, FeatureConfig())
    built = time.perf_counter()
    return {
        "leads": leads,
        "activities": len(export.activities),
        "rejections": len(export.rejections),
        "examples": len(examples),
        "features": len(examples.features.specs),
        "load_s": loaded - generated,
        "features_s": built - loaded,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    """Run each size in a child process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps({"generate_s": generate(args.generate, args.workdir)}))
        return
    if args.child:
        print(json.dumps(run_one(args.child, args.workdir)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            row: dict[str, float] = {}
            for step in ("--generate", "--child"):
                command = [sys.executable, __file__, step, str(size), "--workdir", workdir]
                output = subprocess.run(command, check=True, capture_output=True, text=True)
                row.update(json.loads(output.stdout.strip().splitlines()[-1]))
            rows.append(row)
            print(f"done {size}", file=sys.stderr)
    columns = ["leads", "activities", "rejections", "examples", "generate s", "load s"]
    columns += ["features s", "load+features s", "peak RSS GB (load+features)"]
    print("| " + " | ".join(columns) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['leads']:,} | {r['activities']:,} | {r['rejections']:,} | {r['examples']:,} "
            f"| {r['generate_s']:.1f} | {r['load_s']:.1f} | {r['features_s']:.1f} "
            f"| {r['load_s'] + r['features_s']:.1f} | {r['peak_rss_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()
