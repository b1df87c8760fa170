"""API keys on every non-health route, constant-time comparison, and the bind guard."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from serving.app import create_app
from serving.dependencies import key_matches
from serving.examples import EXAMPLE_REQUEST
from serving.settings import Settings, is_loopback
from srl.cli import app as srl_app
from tests.servers import VENV_BIN, eventually, free_port, running
from tests.serving.conftest import API_KEY, TestClient, api_settings
from tests.serving.request_support import websocket_handshake

PROTECTED = [
    ("POST", "/v1/score"),
    ("POST", "/v1/score/batch"),
    ("GET", "/v1/model"),
    ("POST", "/v1/admin/reload"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("key", [None, "", "wrong-key-0123456789", API_KEY + "x", API_KEY[:-1]])
def test_every_protected_route_needs_a_valid_key(
    secured_client: TestClient, method: str, path: str, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-Key": key}

    response = secured_client.request(method, path, headers=headers, json=EXAMPLE_REQUEST)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_the_right_key_opens_every_route(
    secured_client: TestClient, method: str, path: str
) -> None:
    body = {"items": [EXAMPLE_REQUEST]} if path.endswith("batch") else EXAMPLE_REQUEST

    response = secured_client.request(method, path, headers={"X-API-Key": API_KEY}, json=body)

    assert response.status_code == 200


@pytest.mark.parametrize("spaced", [f"{API_KEY} ", f"\t{API_KEY}", f" {API_KEY}\t"])
@pytest.mark.parametrize("path", ["/v1/score", "/v1/model"])
def test_the_key_is_read_without_the_spaces_around_it(
    secured_client: TestClient, path: str, spaced: str
) -> None:
    """HTTP defines a field value without its surrounding spaces and tabs (RFC 9110)."""
    method = "POST" if path == "/v1/score" else "GET"

    response = secured_client.request(
        method, path, headers={"X-API-Key": spaced}, json=EXAMPLE_REQUEST
    )

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_need_no_key(secured_client: TestClient, path: str) -> None:
    assert secured_client.get(path).status_code == 200


def test_swagger_ui_is_only_served_without_keys(
    secured_client: TestClient, client: TestClient
) -> None:
    assert secured_client.get("/docs").status_code == 404
    assert client.get("/docs").status_code == 200


def test_the_openapi_document_declares_the_key_only_when_required(
    secured_client: TestClient, client: TestClient
) -> None:
    secured = secured_client.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
    open_doc = client.get("/openapi.json").json()

    assert "APIKeyHeader" in secured["components"]["securitySchemes"]
    assert "401" in secured["paths"]["/v1/score"]["post"]["responses"]
    assert "securitySchemes" not in open_doc.get("components", {})


def test_keys_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRL_API_KEYS", f" {API_KEY} ,second-key-0123456789abc,")

    settings = Settings()

    assert [k.get_secret_value() for k in settings.api_keys] == [
        API_KEY,
        "second-key-0123456789abc",
    ]
    assert API_KEY not in repr(settings)


def test_short_keys_are_refused_without_quoting_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a valid key beside a short one (uvicorn's factory start prints the error as is)
    monkeypatch.setenv("SRL_API_KEYS", f"{API_KEY},short")

    with pytest.raises(ValidationError, match="at least 16 characters") as raised:
        Settings()

    assert API_KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (f"{API_KEY},sécret-key-0123456789", "the key at position 2 (counting from 1)"),
        (f"clé-secrète-0123456789,{API_KEY}", "the key at position 1 (counting from 1)"),
        (f"{API_KEY},inner space key 0123,tab\tkey-0123456789", "the keys at positions 2, 3"),
        (f"{API_KEY},key-with-emoji-🔑-0123456", "the key at position 2 (counting from 1)"),
    ],
)
def test_keys_that_are_not_visible_ascii_are_refused_by_position(
    monkeypatch: pytest.MonkeyPatch, keys: str, named: str
) -> None:
    # Given keys a client could never send (X-API-Key is read as Latin-1, keys as UTF-8)
    monkeypatch.setenv("SRL_API_KEYS", keys)

    with pytest.raises(ValidationError, match="visible ASCII") as raised:
        Settings()

    # Then the error names their position in the list, never a key
    assert named in str(raised.value)
    for key in keys.split(","):
        assert key.strip() not in str(raised.value)


def test_keys_of_visible_ascii_are_accepted() -> None:
    punctuation = "!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}~0123456789"

    settings = Settings.model_validate({"api_keys": f"{API_KEY},{punctuation}"})

    assert [k.get_secret_value() for k in settings.api_keys] == [API_KEY, punctuation]


def test_srl_serve_exits_naming_a_key_that_is_not_visible_ascii() -> None:
    # Given an SRL_API_KEYS whose second key holds an accent
    secret = "sécret-key-0123456789"
    environment = {**os.environ, "SRL_API_KEYS": f"{API_KEY},{secret}", "SRL_LOG_LEVEL": "info"}

    # When the service is started
    result = subprocess.run(
        [str(VENV_BIN / "srl"), "serve", "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it exits before serving, naming the variable and the key's position only
    assert result.returncode == 2
    assert (
        "error: SRL_API_KEYS: the key at position 2 (counting from 1) must hold only visible "
        "ASCII characters (letters, digits, punctuation; no spaces or accents): a client "
        "cannot send any other"
    ) in result.stderr
    assert secret not in result.stdout + result.stderr
    assert API_KEY not in result.stdout + result.stderr


def test_keys_are_compared_against_every_key() -> None:
    keys = [SecretStr("first-key-0123456789"), SecretStr("second-key-0123456789")]

    assert key_matches("second-key-0123456789", keys)
    assert not key_matches("second-key-012345678", keys)
    assert not key_matches("ünïcode-key-0123456789", keys)
    assert not key_matches("anything-at-all-000", [])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_no_public_bind_without_keys_unless_allowed() -> None:
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0"):
        Settings().check_bind("0.0.0.0")
    Settings().check_bind("127.0.0.1")
    Settings(allow_public_bind=True).check_bind("0.0.0.0")
    Settings(api_keys=(SecretStr(API_KEY),)).check_bind("0.0.0.0")


@pytest.mark.usefixtures("restored_environ")
def test_srl_serve_refuses_a_public_address_without_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SRL_API_KEYS", raising=False)

    result = CliRunner().invoke(srl_app, ["serve", "--host", "0.0.0.0", "--port", "1"])

    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in result.output


@pytest.mark.usefixtures("restored_environ")
@pytest.mark.parametrize(
    ("policy_text", "message"),
    [
        ("version: 1\nname: broken\ntiers: []\n", "is invalid: tiers"),
        ("version: [1\n", "could not be read"),
    ],
)
def test_srl_serve_refuses_a_policy_it_cannot_use(
    tmp_path: Path, policy_text: str, message: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text, encoding="utf-8")

    result = CliRunner().invoke(srl_app, ["serve", "--policy", str(policy), "--port", "1"])

    assert result.exit_code == 1  # an unusable file, as for srl score and srl check-policy
    assert f"routing policy {policy} {message}" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "server", ["10.1.2.3", "192.0.2.2", "[2001:db8::1]", "[::ffff:10.1.2.3]", "api.example.com"]
)
def test_without_keys_a_request_on_a_public_address_is_refused(
    model_dir: Path, server: str
) -> None:
    app = create_app(api_settings(model_dir))
    with TestClient(app, base_url=f"http://{server}:8000") as public:
        scored = public.post("/v1/score", json=EXAMPLE_REQUEST)
        health = public.get("/healthz")

    for response in (scored, health):
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "forbidden"
        assert "SRL_API_KEYS" in error["message"]
        assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "server", ["127.0.0.1", "127.8.9.10", "[::1]", "[::ffff:127.0.0.1]", "localhost"]
)
def test_without_keys_loopback_addresses_are_served(model_dir: Path, server: str) -> None:
    with TestClient(create_app(api_settings(model_dir)), base_url=f"http://{server}") as local:
        assert local.post("/v1/score", json=EXAMPLE_REQUEST).status_code == 200


def test_keys_or_an_allowed_public_bind_serve_public_addresses(model_dir: Path) -> None:
    allowed = create_app(api_settings(model_dir, allow_public_bind=True))
    secured = create_app(api_settings(model_dir, api_keys=API_KEY))
    with (
        TestClient(allowed, base_url="http://10.1.2.3") as open_client,
        TestClient(secured, base_url="http://10.1.2.3") as secured_client,
    ):
        assert open_client.post("/v1/score", json=EXAMPLE_REQUEST).status_code == 200
        keyed = secured_client.post(
            "/v1/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": API_KEY}
        )
        assert keyed.status_code == 200
        assert secured_client.post("/v1/score", json=EXAMPLE_REQUEST).status_code == 401


def _public_address() -> str | None:
    """This machine's address on its default route, if it has one besides loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) else address


@pytest.mark.slow
def test_uvicorn_started_by_hand_on_every_address_answers_loopback_only(
    model_dir: Path, tmp_path: Path
) -> None:
    public = _public_address()
    if public is None:
        pytest.skip("this machine has no address besides loopback")
    port = free_port()
    command = [
        str(VENV_BIN / "uvicorn"),
        "serving.app:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    environment = {"SRL_MODEL_URI": str(model_dir), "SRL_API_KEYS": ""}
    local = f"http://127.0.0.1:{port}"

    with running(command, f"{local}/readyz", tmp_path / "uvicorn.log", environment):
        from_loopback = httpx.post(f"{local}/v1/score", json=EXAMPLE_REQUEST)
        from_network = httpx.post(f"http://{public}:{port}/v1/score", json=EXAMPLE_REQUEST)

    assert from_loopback.status_code == 200
    assert from_network.status_code == 403


@pytest.mark.slow
def test_without_keys_a_unix_socket_is_served(model_dir: Path, tmp_path: Path) -> None:
    socket_path = tmp_path / "srl.sock"
    config = uvicorn.Config(create_app(api_settings(model_dir)), uds=str(socket_path))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://srl") as local:
            eventually(lambda: socket_path.exists() and _ready(local))
            scored = local.post("/v1/score", json=EXAMPLE_REQUEST)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

    assert scored.status_code == 200


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_uvicorn_started_by_hand_logs_no_raw_path_and_counts_no_invented_method(
    model_dir: Path, tmp_path: Path
) -> None:
    # Given the app started by uvicorn itself, with its access log on by default and the
    # h11 protocol, which hands any method token to the app
    port = free_port()
    command = [
        str(VENV_BIN / "uvicorn"),
        "serving.app:create_app",
        "--factory",
        "--http",
        "h11",
        "--port",
        str(port),
    ]
    log = tmp_path / "uvicorn.log"
    base = f"http://127.0.0.1:{port}"
    key = {"X-API-Key": API_KEY}
    with running(
        command, f"{base}/readyz", log, {"SRL_MODEL_URI": str(model_dir), "SRL_API_KEYS": API_KEY}
    ):
        # When callers send a personal value in a query and a path, and an invented method
        httpx.post(f"{base}/v1/score?email=zz.secret%40example.org", json=EXAMPLE_REQUEST)
        httpx.get(f"{base}/v1/lookup/zz.secret%40example.org", headers=key)
        invented = httpx.request("QWERTYNAME", f"{base}/v1/score", headers=key)
        handshake = websocket_handshake(port, "/v1/score?email=zz.secret%40example.org")
        websocket_handshake(port, "/v1/lookup/zz.secret%40example.org")
        metrics = httpx.get(f"{base}/metrics", headers=key).text

    # Then no log line holds them, and the method is counted as "other"
    written = log.read_text(encoding="utf-8")
    assert "zz.secret" not in written
    assert "QWERTYNAME" not in written
    assert "QWERTYNAME" not in metrics
    assert invented.status_code == 405
    assert 'srl_http_requests_total{method="other",route="/v1/score",status="405"} 1.0' in metrics
    # uvicorn still refuses the WebSocket handshake itself, its line without the query
    assert handshake.startswith(b"HTTP/1.1 403 ")
    assert '"WebSocket /v1/score" 403' in written
    assert '"WebSocket <unmatched>" 403' in written
