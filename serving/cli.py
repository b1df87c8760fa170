"""``srl serve``: run the scoring API under uvicorn.

Each option defaults to its ``SRL_*`` environment variable (an option given on the command
line wins) and is written back to that variable, so every worker process builds the same
``Settings`` through ``serving.app:create_app``. Threads are split so that workers times
threads never exceeds the cores: each worker predicts with LightGBM on its own threads and
OpenMP and BLAS are capped to match (through the environment for worker processes, and
through ``threadpoolctl`` for pools already loaded when this process serves itself).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from features.config import FeatureConfig
from features.model_store import DEFAULT_MODEL_URI
from serving.batch_signals import handle_stop_signals
from serving.logs import LOG_LEVELS
from serving.policy import (
    PolicyError,
    RoutingPolicy,
    check_policy_features,
    idle_rules,
    read_policy,
)
from serving.settings import Settings, settings_problems

if TYPE_CHECKING:
    from features.predictor import ReconversionModel

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, requested: int, cores: int) -> int:
    """LightGBM threads per worker: as asked, but never more than the worker's share of cores."""
    share = max(1, cores // max(workers, 1))
    return share if requested <= 0 else min(requested, share)


def cap_loaded_thread_pools(threads: int) -> None:
    """Cap the OpenMP and BLAS pools this process has already loaded to ``threads``.

    Those libraries read ``OMP_NUM_THREADS`` and the like when they load, and ``srl``
    loads numpy's BLAS (with pandas) before ``srl serve`` can set the variables; LightGBM's
    OpenMP loads with the model, after them, as it does in worker processes.
    """
    threadpool_limits(limits=threads)


def serve(
    host: Annotated[str, typer.Option(envvar="SRL_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="SRL_PORT", help="Port to bind.")
    ] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            envvar="SRL_MODEL_URI",
            help="Registry URI (models:/name@alias) or model directory.",
        ),
    ] = DEFAULT_MODEL_URI,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", envvar="SRL_POLICY", help="Routing policy YAML (default: packaged)."
        ),
    ] = None,
    reload_interval: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="SRL_RELOAD_INTERVAL_SECONDS",
            help="Seconds between checks of the model source (0: never).",
        ),
    ] = 0.0,
    threads: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="SRL_MODEL_THREADS",
            help="LightGBM threads per worker (0: cores / workers).",
        ),
    ] = 1,
    max_batch_items: Annotated[
        int, typer.Option(min=1, envvar="SRL_MAX_BATCH_ITEMS", help="Most leads per batch call.")
    ] = 500,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.001,
            envvar="SRL_REQUEST_TIMEOUT_SECONDS",
            help="Time budget of one scoring call, seconds.",
        ),
    ] = 10.0,
    allow_public_bind: Annotated[
        bool,
        typer.Option(
            envvar="SRL_ALLOW_PUBLIC_BIND",
            help="Bind to a non-loopback address even without SRL_API_KEYS.",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option(envvar="SRL_LOG_LEVEL", help="debug, info, warning, error or critical.")
    ] = "info",
) -> None:
    """Serve the scoring API (keys from SRL_API_KEYS; see docs/serving.md)."""
    if log_level.lower() not in LOG_LEVELS:
        typer.echo(f"error: --log-level must be one of {', '.join(LOG_LEVELS)}", err=True)
        raise typer.Exit(2)
    cores = available_cores()
    per_worker = threads_per_worker(workers, threads, cores)
    overrides = {
        "SRL_HOST": host,
        "SRL_PORT": str(port),
        "SRL_MODEL_URI": model,
        "SRL_RELOAD_INTERVAL_SECONDS": str(reload_interval),
        "SRL_MODEL_THREADS": str(per_worker),
        "SRL_MAX_BATCH_ITEMS": str(max_batch_items),
        "SRL_REQUEST_TIMEOUT_SECONDS": str(timeout),
        "SRL_ALLOW_PUBLIC_BIND": str(allow_public_bind).lower(),
    }
    if policy is not None:
        overrides["SRL_POLICY"] = str(policy.resolve())
    os.environ.update(overrides)
    os.environ.update({name: str(per_worker) for name in THREAD_VARIABLES})
    if workers == 1:  # this process serves: its pools were loaded before the variables
        cap_loaded_thread_pools(per_worker)
    settings = _checked_settings(host)
    _require_free_port(settings.host, settings.port)
    if workers > cores:
        typer.echo(f"warning: {workers} workers on {cores} cores will compete for CPU", err=True)
    with _worker_coordination(workers):
        _run(settings, workers, log_level)


#: uvicorn's exit code when it cannot start (the address in use, most often).
UVICORN_STARTUP_FAILURE = 3


def _require_free_port(host: str, port: int) -> None:
    """Exit 1, naming the address, when it cannot be listened on: before the model loads,
    which may take a while, rather than after (uvicorn's own exit code, 3, is another
    command's "some rows rejected")."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = error.strerror or str(error)
            typer.echo(f"error: cannot listen on {host}:{port}: {reason}", err=True)
            raise typer.Exit(1) from error


def _checked_settings(host: str) -> Settings:
    """The service's settings, checked before anything starts: a refused option or
    ``SRL_*`` variable exits 2 (the command line), an unusable policy file 1, as it does
    for every command."""
    try:
        settings = Settings()
        settings.check_bind(host)
    except ValidationError as error:
        typer.echo(f"error: {settings_problems(error)}", err=True)
        raise typer.Exit(2) from error
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    _usable_policy(settings.policy)
    return settings


def _usable_policy(path: Path | None) -> RoutingPolicy:
    """The policy at ``path`` (the packaged default when None); exit 1 naming the file and
    the field when it cannot be used."""
    try:
        return read_policy(path)
    except PolicyError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


@contextmanager
def _worker_coordination(workers: int) -> Iterator[None]:
    """With several workers: a shared reload signal and multi-process metrics."""
    if workers == 1:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="srl-serve-") as scratch:
        metrics_dir = Path(scratch) / "metrics"
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ["SRL_RELOAD_SIGNAL"] = str(Path(scratch) / "reload")
        yield


def _run(settings: Settings, workers: int, log_level: str) -> None:
    import uvicorn

    from serving.http_protocol import GuardedHttpToolsProtocol
    from serving.logs import log_config

    protocol = functools.partial(
        GuardedHttpToolsProtocol,
        header_timeout=settings.header_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.max_connections,
    )
    # uvicorn shuts down gracefully on SIGTERM and then raises it again, so that the server
    # ends by the signal (a clean stop to systemd), not by the exit code `srl` gives it.
    handle_stop_signals(signal.SIG_DFL)
    try:
        uvicorn.run(
            "serving.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            http=protocol,  # type: ignore[arg-type]  # uvicorn calls it as it calls a class
            ws="none",  # no WebSocket route: an upgrade is answered as the HTTP request it is
            log_config=log_config(log_level.upper()),
            access_log=False,
            server_header=False,
        )
    except SystemExit as stopped:
        if stopped.code != UVICORN_STARTUP_FAILURE:
            raise
        typer.echo(
            f"error: the server could not start on {settings.host}:{settings.port} "
            "(its reason is in the log above)",
            err=True,
        )
        raise typer.Exit(1) from stopped


def check_policy(
    path: Annotated[Path, typer.Argument(help="The routing policy YAML file to check.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Check the rebound's intent feature against this model's features (a "
            "models:/ URI or a model directory) rather than the default feature settings.",
        ),
    ] = None,
) -> None:
    """Check a routing policy file as `srl serve` and `srl score` would, without starting
    anything: prints name@vversion, or the problem naming the file and the field (exit 1).
    The rebound's intent feature must be a numeric feature of the default feature settings,
    or of the model given with --model, whose rules the policy can use (a rule that can
    route nothing with that model is a warning)."""
    policy = _usable_policy(path)
    loaded = _model_of(model)
    config = FeatureConfig() if loaded is None else loaded.config
    named = model or "the default feature settings (pass --model to check a model's)"
    try:
        check_policy_features(policy, config, path, named)
    except PolicyError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if loaded is not None:
        for warning in idle_rules(policy, loaded.trained_age_days):
            typer.echo(f"warning: {warning}", err=True)
    typer.echo(policy.label)


def _model_of(model: str | None) -> ReconversionModel | None:
    """The model given with ``--model`` (None when none was); exit 1 when it cannot load."""
    if model is None:
        return None
    from features.model_store import ModelLoadError
    from serving.model_source import load_serving_model

    try:
        loaded, _ = load_serving_model(model, 1)
    except ModelLoadError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    return loaded


def register(app: typer.Typer) -> None:
    """Add ``srl serve`` and ``srl check-policy`` to the ``srl`` command."""
    app.command("serve")(serve)
    app.command("check-policy")(check_policy)
