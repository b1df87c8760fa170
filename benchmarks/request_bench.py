"""Where one scoring request's time goes: each step of the single-lead path, timed alone.

Cuts request bodies of about 50 activities from an export, loads a saved model, and times
each step of ``/v1/score``'s work (best of ``--repeats`` runs of ``--runs`` requests):
validating the JSON bytes (``ScoreRequest``), building the history, the feature engine,
encoding and prediction, routing, and reasons (TreeSHAP, 3 per lead). It also times the
same steps for one call of 8 leads (what coalescing does at concurrency 8) and of 100
leads (a batch) per lead, and
the validation MLflow's pyfunc does instead (``ScoreRequest.model_validate`` on the body
MLflow has already parsed), the one step of the comparison that differs besides the servers.

    .venv/bin/python benchmarks/request_bench.py --data /tmp/serve-bench/export \\
        --model /tmp/serve-bench/artifacts/<run>/artifacts/model/artifacts/srl-model
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import lead_bodies

from features.engine import compute_features
from features.predictor import ReconversionModel
from features.records import ScoreRequest
from features.request_history import requests_history
from serving.policy import load_policy
from serving.reasons import explain
from serving.routing import RoutingInputs, route


def best_microseconds(step: Callable[[int], object], runs: int, repeats: int) -> float:
    """The best mean time of ``step(i)`` over ``repeats`` rounds of ``runs`` calls."""
    step(0)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(runs):
            step(index)
        best = min(best, (time.perf_counter() - started) / runs)
    return best * 1e6


def step_times(
    raw: list[bytes], group: int, model: ReconversionModel, runs: int, repeats: int
) -> dict[str, float]:
    """Microseconds per lead of each step when ``group`` leads are scored in one call."""
    policy = load_policy()
    now = datetime.now(UTC)
    pool = raw * -(-group // len(raw))  # bodies repeat when the export has fewer leads
    bodies = [pool[i : i + group] for i in range(0, len(pool) - group + 1, group)]
    requests = [[ScoreRequest.model_validate_json(b) for b in chunk] for chunk in bodies]
    histories = [requests_history(chunk, model.config, now) for chunk in requests]
    features = [compute_features(h, e, model.config) for h, e in histories]
    matrices = [model.matrix(f) for f in features]
    probabilities = [model.predict_matrix(m) for m in matrices]
    n = len(bodies)
    steps: dict[str, Callable[[int], object]] = {
        "validate the JSON body": lambda i: [
            ScoreRequest.model_validate_json(b) for b in bodies[i % n]
        ],
        "build the history": lambda i: requests_history(requests[i % n], model.config, now),
        "compute 219 features": lambda i: compute_features(*histories[i % n], model.config),
        "encode and predict": lambda i: model.predict_matrix(model.matrix(features[i % n])),
        "route": lambda i: route(
            RoutingInputs.from_features(
                features[i % n],
                probabilities[i % n],
                histories[i % n][1].as_of,
                policy,
                beyond_trained_age=model.beyond_trained_age(features[i % n]),
            ),
            policy,
        ),
        "3 reasons": lambda i: explain(model, features[i % n], matrices[i % n], 3),
    }
    return {
        name: best_microseconds(step, max(runs // group, 1), repeats) / group
        for name, step in steps.items()
    }


def pyfunc_validation_time(raw: list[bytes], runs: int, repeats: int) -> float:
    """Microseconds to validate one parsed body in Python mode, as the MLflow pyfunc does."""
    parsed = [orjson.loads(body) for body in raw]
    return best_microseconds(
        lambda i: ScoreRequest.model_validate(parsed[i % len(parsed)]), runs, repeats
    )


def main() -> None:
    """Time every step for one lead and for groups of 8 leads; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Export to cut bodies from.")
    parser.add_argument("--model", type=Path, required=True, help="A saved model directory.")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    model = ReconversionModel.load(options.model, 1)
    raw = [orjson.dumps(body) for body in lead_bodies(options.data)]
    single = step_times(raw, 1, model, options.runs, options.repeats)
    grouped = step_times(raw, 8, model, options.runs, options.repeats)
    batch = step_times(raw, 100, model, options.runs, options.repeats)
    print("| step | 1 lead, µs | 8 leads in one call, µs per lead | 100 leads, µs per lead |")
    print("|---|---:|---:|---:|")
    for name, value in single.items():
        print(f"| {name} | {value:,.0f} | {grouped[name]:,.0f} | {batch[name]:,.0f} |")
    totals = [f"**{sum(times.values()):,.0f}**" for times in (single, grouped, batch)]
    print(f"| **total** | {' | '.join(totals)} |")
    pyfunc = pyfunc_validation_time(raw, options.runs, options.repeats)
    print(f"\nMLflow's pyfunc validating one parsed body (Python mode): {pyfunc:,.0f} µs")


if __name__ == "__main__":
    main()
