"""Feature-building benchmark: wall time and peak memory for generated exports.

Each size runs in its own process so that peak memory is that size's alone:

    .venv/bin/python benchmarks/features_bench.py --sizes 10000 100000 1000000

Per size it generates an export (Parquet, timed separately), then loads and validates it
and builds every training example with its features and labels. It prints a Markdown table.
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


def run_one(leads: int, workdir: Path) -> dict[str, float]:
    """Generate, load and featurise one export in this process; return the figures."""
    from features.config import FeatureConfig
    from features.dataset import build_training_set
    from features.loading import load_export
    from features.synthetic import generate_export

    export_dir = workdir / f"export-{leads}"
    started = time.perf_counter()
    generate_export(export_dir, leads, 7, "parquet")
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
        "generate_s": generated - started,
        "load_s": loaded - generated,
        "features_s": built - loaded,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    """Run each size in a child process and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.workdir)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            command = [sys.executable, __file__, "--child", str(size), "--workdir", workdir]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(f"done {size}", file=sys.stderr)
    print(
        "| leads | activities | rejections | examples | generate s | load s | features s | load+features s | peak RSS GB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['leads']:,} | {r['activities']:,} | {r['rejections']:,} | {r['examples']:,} "
            f"| {r['generate_s']:.1f} | {r['load_s']:.1f} | {r['features_s']:.1f} "
            f"| {r['load_s'] + r['features_s']:.1f} | {r['peak_rss_gb']:.2f} |"
        )


if __name__ == "__main__":
    main()
