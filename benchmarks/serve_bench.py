"""Scoring API benchmark: ``srl serve`` against ``mlflow models serve`` on one registered model.

Both servers run on 127.0.0.1 at the same time with the same number of workers (one by
default, ``--workers``). Scenarios are measured in interleaved rounds, so that background
load hits both alike, by the same small asyncio HTTP/1.1 client (keep-alive connections, one
request in flight per connection): single-lead requests (about 50 activities each) at
concurrency 1, 8 and 32, and 100-lead batches. ``srl serve`` is measured with reasons (the
full path: features from raw rows, prediction, routing and 3 reasons) and without reasons;
MLflow's pyfunc returns only the probability. Two more servers show the floors: ``mlflow
models serve`` on a model that answers a constant (``benchmarks/constant_model.py``), the
most any model behind MLflow could get, and an empty FastAPI endpoint under uvicorn
(``benchmarks/empty_app.py``), the most any FastAPI service could get with this client on
this machine. The client runs on uvloop, so that its own share of the cores stays small.

    MLFLOW_TRACKING_URI=sqlite:///.srl/mlflow.db \\
        .venv/bin/python benchmarks/serve_bench.py --model models:/srl-reconversion@champion

With ``--prepare DIR`` the script first builds a registry in DIR: a generated export and a
model registered as ``srl-reconversion@champion`` (by ``srl train`` when available, else a
LightGBM model with the training defaults' shape). It prints a Markdown table; ``--out``
also writes it to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_ACTIVITIES = 50
POOL = 200


@dataclass(frozen=True)
class Result:
    """One scenario's figures."""

    server: str
    scenario: str
    concurrency: int
    requests: int
    leads_per_request: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


# --- a minimal keep-alive HTTP/1.1 client --------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    port: int, requests: Sequence[bytes], deadline: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    index = random.randrange(len(requests))
    try:
        while time.perf_counter() < deadline:
            payload = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(payload)
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def _load(
    port: int, requests: Sequence[bytes], concurrency: int, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(_connection(port, requests, deadline, latencies) for _ in range(concurrency))
    )
    return latencies, sum(errors), time.perf_counter() - started


def measure(
    server: str,
    scenario: str,
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    leads: int,
) -> Result:
    """Warm up, then load the server for ``seconds`` at ``concurrency``."""
    uvloop.run(_load(port, requests, concurrency, min(1.0, seconds / 4)))
    latencies, errors, elapsed = uvloop.run(_load(port, requests, concurrency, seconds))
    latencies.sort()
    return Result(
        server,
        scenario,
        concurrency,
        len(latencies),
        leads,
        elapsed,
        1000 * statistics.median(latencies),
        1000 * latencies[int(0.99 * (len(latencies) - 1))],
        errors,
    )


# --- servers ---------------------------------------------------------------------------------


def _wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def _ready_or_stopped(
    port: int, path: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    try:
        _wait_ready(port, path, process, timeout)
    except BaseException:
        stop(process)
        raise


def start_ours(model: str, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    """``srl serve`` with ``workers`` workers."""
    command = [
        str(BIN / "srl"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        model,
        "--workers",
        str(workers),
    ]  # the default log level: one log line per request, as MLflow's access log
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    _ready_or_stopped(port, "/readyz", process, 180)
    return process


def start_mlflow(model: str, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    """``mlflow models serve`` from the project's environment with ``workers`` workers."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "SRL_MODEL_THREADS": "1"}
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
    ]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    _ready_or_stopped(port, "/ping", process, 300)
    return process


def start_empty(port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    """``benchmarks/empty_app.py`` under uvicorn with ``workers`` workers."""
    command = [
        str(BIN / "uvicorn"),
        "empty_app:app",
        "--app-dir",
        str(ROOT / "benchmarks"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    _ready_or_stopped(port, "/ping", process, 60)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server started here and wait for it."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- request bodies ---------------------------------------------------------------------------


def lead_bodies(export_dir: Path) -> list[dict[str, Any]]:
    """Bodies of open rejections whose lead has about 50 activities, scored at the snapshot
    (a rejection the lead's later opportunity closed is not scored)."""
    from features.config import FeatureConfig
    from features.dataset import build_scoring_set
    from features.loading import load_export
    from features.requests import request_body

    export = load_export(export_dir)
    counts = export.activities.groupby("lead_id", observed=True).size()
    latest = export.rejections.sort_values("rejected_at").groupby("lead_id", observed=True).last()
    open_now = set(build_scoring_set(export, FeatureConfig()).keys["rejection_id"])
    latest = latest.loc[latest["rejection_id"].isin(open_now)]
    near = counts[(counts - TARGET_ACTIVITIES).abs() <= 5]
    leads = [lead for lead in near.index if lead in latest.index][:POOL]
    if not leads:
        raise RuntimeError("no lead with about 50 activities in the export")
    return [
        request_body(export, str(latest.at[lead, "rejection_id"]), export.snapshot_at)
        for lead in leads
    ]


def payloads(bodies: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    """Pre-built HTTP requests of every scenario."""
    batches = [bodies[i : i + 100] for i in range(0, len(bodies) - 99, 50)] or [bodies[:100]]
    single = [orjson.dumps(b) for b in bodies]
    return {
        "ours_reasons": [_request("/v1/score?reasons=3", b) for b in single],
        "ours_plain": [_request("/v1/score?reasons=0", b) for b in single],
        "mlflow": [_request("/invocations", orjson.dumps({"inputs": [b]})) for b in bodies],
        "ours_batch_reasons": [
            _request("/v1/score/batch?reasons=3", orjson.dumps({"items": b})) for b in batches
        ],
        "ours_batch_plain": [
            _request("/v1/score/batch?reasons=0", orjson.dumps({"items": b})) for b in batches
        ],
        "mlflow_batch": [_request("/invocations", orjson.dumps({"inputs": b})) for b in batches],
    }


# --- preparing a registry -----------------------------------------------------------------


def prepare(directory: Path, leads: int) -> str:
    """A registry in ``directory`` with ``srl-reconversion@champion``; returns the export dir."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ["SRL_ARTIFACT_ROOT"] = str(directory / "artifacts")
    export = directory / "export"
    if not export.exists():
        subprocess.run(
            [str(BIN / "srl"), "generate", "--out", str(export), "--leads", str(leads)], check=True
        )
    if not (directory / "mlflow.db").exists():
        _register_model(export)
    _register_constant_model()
    return str(export)


CONSTANT_MODEL = "models:/srl-bench-constant@champion"


def _register_constant_model() -> None:
    """Register ``benchmarks/constant_model.py`` as ``srl-bench-constant@champion`` (once)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version_by_alias("srl-bench-constant", "champion")
        return
    except MlflowException:
        pass

    with mlflow.start_run(run_name="constant-model"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("constant_model.py")),
            input_example=[{"lead": {}}],
            registered_model_name="srl-bench-constant",
        )
    MlflowClient().set_registered_model_alias(
        "srl-bench-constant", "champion", str(info.registered_model_version)
    )


def _register_model(export: Path) -> None:
    try:
        import training.train  # noqa: F401
    except ImportError:
        _quick_model(export)
        return
    subprocess.run([str(BIN / "srl"), "train", "--data", str(export)], check=True)
    # The gate may already have made version 1 champion; promoting again is harmless.
    subprocess.run([str(BIN / "srl"), "promote", "1", "--reason", "benchmark"], check=True)


def _quick_model(export: Path) -> None:
    """A LightGBM model of the training defaults' shape (4 leaves, 800 rounds), registered."""
    import lightgbm as lgb
    import mlflow
    from mlflow import MlflowClient

    from features.config import FeatureConfig
    from features.dataset import build_training_set, uncensored
    from features.encoding import CategoryVocabulary
    from features.loading import load_export
    from features.predictor import Calibration, ReconversionModel
    from features.pyfunc import log_pyfunc
    from features.requests import request_body

    loaded = load_export(export)
    examples = uncensored(build_training_set(loaded, FeatureConfig()))
    assert examples.labels is not None
    vocabulary = CategoryVocabulary.fit(examples.features, 20, 200)
    matrix = vocabulary.encode(examples.features)
    params = {
        "objective": "binary",
        "learning_rate": 0.02,
        "num_leaves": 4,
        "verbose": -1,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.3,
        "num_threads": 2,
    }
    booster = lgb.train(params, lgb.Dataset(matrix, examples.labels.target), 800)
    model = ReconversionModel(
        FeatureConfig(),
        vocabulary,
        booster,
        Calibration(),
        examples.features.names,
        {"trained_at": "benchmark"},
    )
    first = examples.keys.iloc[0]  # open at its as_of, as every example is
    with mlflow.start_run():
        info = log_pyfunc(
            model,
            request_body(loaded, str(first["rejection_id"]), first["as_of"]),
            registered_model_name="srl-reconversion",
        )
    MlflowClient().set_registered_model_alias(
        "srl-reconversion", "champion", str(info.registered_model_version)
    )


# --- the run ---------------------------------------------------------------------------------


SCENARIOS: tuple[tuple[str, str, str, int, int], ...] = (
    # (server, scenario, payload key, concurrency, leads per request)
    *(
        (server, name, key, concurrency, 1)
        for concurrency in (1, 8, 32)
        for server, name, key in (
            ("srl serve", "single, reasons", "ours_reasons"),
            ("srl serve", "single", "ours_plain"),
            ("mlflow models serve", "single", "mlflow"),
        )
    ),
    ("srl serve", "batch 100, reasons", "ours_batch_reasons", 1, 100),
    ("srl serve", "batch 100", "ours_batch_plain", 1, 100),
    ("mlflow models serve", "batch 100", "mlflow_batch", 1, 100),
)
FLOOR = "mlflow models serve, constant model"
EMPTY = "FastAPI, empty endpoint"
FLOOR_SCENARIOS = tuple(
    (server, "single", key, concurrency, 1)
    for server, key in ((FLOOR, "mlflow"), (EMPTY, "ours_plain"))
    for concurrency in (1, 8, 32)
)
PORTS = {"srl serve": 18431, "mlflow models serve": 18432, FLOOR: 18433, EMPTY: 18434}


def run(
    model: str,
    export_dir: Path,
    seconds: float,
    rounds: int,
    workers: int,
    workdir: Path,
    floor: bool = True,
) -> list[Result]:
    """Every scenario on every server, interleaved in rounds so that drift hits all alike."""
    requests = payloads(lead_bodies(export_dir))
    scenarios = SCENARIOS + (FLOOR_SCENARIOS if floor else ())
    servers: list[subprocess.Popen[bytes]] = []
    try:
        servers.append(start_ours(model, PORTS["srl serve"], workdir / "srl-serve.log", workers))
        servers.append(
            start_mlflow(model, PORTS["mlflow models serve"], workdir / "mlflow-serve.log", workers)
        )
        if floor:
            log = workdir / "mlflow-constant.log"
            servers.append(start_mlflow(CONSTANT_MODEL, PORTS[FLOOR], log, workers))
            servers.append(start_empty(PORTS[EMPTY], workdir / "empty-app.log", workers))
        parts: dict[tuple[str, str, int], list[Result]] = {}
        for _ in range(rounds):
            for server, name, key, concurrency, leads in scenarios:
                result = measure(
                    server, name, PORTS[server], requests[key], concurrency, seconds / rounds, leads
                )
                parts.setdefault((server, name, concurrency), []).append(result)
    finally:
        for process in servers:
            stop(process)
    return [_merge(results) for results in parts.values()]


def _merge(results: list[Result]) -> Result:
    """One scenario's rounds as one result (latency percentiles: the rounds' median)."""
    first = results[0]
    return Result(
        first.server,
        first.scenario,
        first.concurrency,
        sum(r.requests for r in results),
        first.leads_per_request,
        sum(r.seconds for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def table(results: list[Result]) -> str:
    """The Markdown table: throughput, latency and ratios to mlflow models serve."""
    baseline = {
        (r.scenario.replace(", reasons", ""), r.concurrency): r
        for r in results
        if r.server == "mlflow models serve"
    }
    lines = [
        "| server | scenario | concurrency | leads/s | requests/s | p50 ms | p99 ms | errors "
        "| throughput vs mlflow | p50 vs mlflow |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base = baseline.get((r.scenario.replace(", reasons", ""), r.concurrency))
        ratio = f"{r.rps / base.rps:.1f}x" if base and r.server != base.server else ""
        compared = base is not None and r.server != base.server
        latency = f"{base.p50_ms / r.p50_ms:.1f}x faster" if base and compared else ""
        lines.append(
            f"| {r.server} | {r.scenario} | {r.concurrency} | {r.rps * r.leads_per_request:,.0f} "
            f"| {r.rps:,.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {ratio} | {latency} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse options, prepare if asked, run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/srl-reconversion@champion")
    parser.add_argument("--data", type=Path, help="Export the request bodies are cut from.")
    parser.add_argument("--prepare", type=Path, help="Build a registry and export here first.")
    parser.add_argument("--leads", type=int, default=5000, help="Leads of the prepared export.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Load per scenario.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument("--workers", type=int, default=1, help="Workers of each server.")
    parser.add_argument("--out", type=Path, help="Also write the table here.")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="Skip the floors: the constant model (needs --prepare's registry), the empty app.",
    )
    options = parser.parse_args()
    data = options.data
    if options.prepare is not None:
        data = Path(prepare(options.prepare.resolve(), options.leads))
    if data is None:
        parser.error("--data (or --prepare) is required")
    workdir = options.prepare or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    results = run(
        options.model,
        data,
        options.seconds,
        options.rounds,
        options.workers,
        workdir,
        floor=not options.no_floor,
    )
    text = table(results)
    print(text)
    if options.out is not None:
        options.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
