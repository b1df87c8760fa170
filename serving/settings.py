"""The scoring service's settings: one object, read from ``SRL_*`` environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from features.model_store import DEFAULT_MODEL_URI

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: What an API key may hold: visible ASCII characters, no spaces. Starlette reads the
#: ``X-API-Key`` header as Latin-1 and ``serving.dependencies.key_matches`` compares UTF-8
#: bytes, so a key with any other character could never match.
API_KEY_CHARACTERS = re.compile(r"[!-~]+")


class Settings(BaseSettings):
    """Everything the API process reads from its environment, validated at start-up.

    Attributes:
        api_keys: accepted ``X-API-Key`` values (``SRL_API_KEYS``, comma-separated). Empty
            means no authentication, which is only allowed on a loopback address.
        model_uri: a registry URI (``models:/name@alias``, ``models:/name/3``) or a local
            model directory.
        policy: the routing policy YAML (the packaged default when unset).
        host, port: where ``srl serve`` binds.
        allow_public_bind: bind to a non-loopback address even without API keys.
        max_batch_items: most leads in one ``/v1/score/batch`` call.
        max_body_bytes: largest request body accepted.
        request_timeout_seconds: time budget of one scoring call.
        header_timeout_seconds: time a request's headers (and a new connection's first
            request) may take to arrive under ``srl serve`` (``serving.http_protocol``).
        max_header_bytes: largest request line and headers accepted under ``srl serve``.
        max_connections: open connections one ``srl serve`` worker serves; a connection
            beyond them gets a 503 to its first request and is closed.
        reasons_default: reasons per lead when the request does not say.
        reload_interval_seconds: how often to check whether the model source moved (0: never).
        retry_interval_seconds: how often to retry while no model could be loaded.
        startup_wait_seconds: how long start-up waits for the first model before serving
            (not ready) anyway.
        model_threads: LightGBM threads per process.
        reload_signal: a file touched on ``/v1/admin/reload`` so that every worker reloads.
        coalesce: score concurrent ``/v1/score`` calls of a worker together in one pass
            (``serving.coalescing``); answers are the same either way.
    """

    # No error may quote a value: SRL_API_KEYS holds every key, the valid ones too.
    # No waiting time may be infinite either (SRL_STARTUP_WAIT_SECONDS=inf: never listening).
    model_config = SettingsConfigDict(
        env_prefix="SRL_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )

    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    model_uri: str = DEFAULT_MODEL_URI
    policy: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allow_public_bind: bool = False
    max_batch_items: int = Field(default=500, ge=1, le=100_000)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_connections: int = Field(default=256, ge=1, le=1_000_000)
    reasons_default: int = Field(default=3, ge=0, le=50)
    reload_interval_seconds: float = Field(default=0.0, ge=0)
    retry_interval_seconds: float = Field(default=5.0, gt=0)
    startup_wait_seconds: float = Field(default=30.0, ge=0)
    model_threads: int = Field(default=1, ge=0)
    reload_signal: Path | None = None
    coalesce: bool = True

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_usable(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        problems = []
        if any(len(key.get_secret_value()) < 16 for key in keys):
            problems.append("every API key must be at least 16 characters long")
        if positions := unprintable_keys(keys):
            problems.append(_unprintable_problem(positions))
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a valid ``X-API-Key``."""
        return bool(self.api_keys)

    def check_bind(self, host: str | None = None) -> None:
        """Refuse a public address when no API key is configured.

        Raises:
            ValueError: ``host`` is not a loopback address, no key is configured and
                ``allow_public_bind`` is off.
        """
        target = host or self.host
        if self.auth_enabled or self.allow_public_bind or is_loopback(target):
            return
        raise ValueError(
            f"refusing to listen on {target} without API keys: set SRL_API_KEYS, bind to "
            "127.0.0.1, or pass --allow-public-bind"
        )


def unprintable_keys(keys: tuple[SecretStr, ...]) -> list[int]:
    """The positions in ``keys``, counting from 1, of the keys holding anything but visible
    ASCII characters (``API_KEY_CHARACTERS``)."""
    return [
        position
        for position, key in enumerate(keys, start=1)
        if not API_KEY_CHARACTERS.fullmatch(key.get_secret_value())
    ]


def _unprintable_problem(positions: list[int]) -> str:
    """The refusal of the keys at ``positions``, naming where they are, never what."""
    which = (
        f"the key at position {positions[0]}"
        if len(positions) == 1
        else f"the keys at positions {', '.join(map(str, positions))}"
    )
    return (
        f"{which} (counting from 1) must hold only visible ASCII characters (letters, "
        "digits, punctuation; no spaces or accents): a client cannot send any other"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``, and
    IPv4 loopback written as IPv6, ``::ffff:127.0.0.1``)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def settings_problems(error: ValidationError) -> str:
    """The problems of a refused configuration, one per line, each named by its
    environment variable (``SRL_PORT: ...``) and never quoting the value."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"SRL_{field.upper()}: {message}" if field else message)
    return "\n".join(lines)
