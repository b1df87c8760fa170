"""Request headers are bounded in time and size under ``srl serve`` (``serving.http_protocol``).

A real ``srl serve`` with a 1 s header timeout and a 4 KiB header limit, driven over raw
sockets: stalled headers get a 408, silent connections are closed, oversized headers a 431,
and ordinary requests (headers in pieces, keep-alive pauses, bodies far larger than the
header limit) are untouched.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from serving.examples import EXAMPLE_REQUEST
from tests.servers import SRL, free_port, running
from tests.serving.request_support import example_items, websocket_handshake

HEADER_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096


def _serving(model_dir: Path, log_dir: Path, settings: dict[str, str]) -> Iterator[int]:
    """A real ``srl serve`` of ``model_dir`` with these ``SRL_*`` settings; yields its port."""
    port = free_port()
    environment = {"SRL_PORT": str(port), "SRL_MODEL_URI": str(model_dir), **settings}
    url = f"http://127.0.0.1:{port}/readyz"
    with running([SRL, "serve"], url, log_dir / "serve.log", environment):
        yield port


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = {
        "SRL_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "SRL_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    }
    yield from _serving(model_dir, tmp_path_factory.mktemp("headers"), settings)


def _connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(10 * HEADER_TIMEOUT)
    return connection


def _until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b"".join(iter(lambda: connection.recv(65536), b""))
    connection.close()
    return received


def _received(connection: socket.socket) -> bytes:
    """The next bytes on an open connection; a closed one fails the test (rather than
    reading nothing for ever)."""
    data = connection.recv(65536)
    assert data, "the server closed the connection before the answer ended"
    return data


def _one_answer(connection: socket.socket) -> bytes:
    """One whole answer (head and ``Content-Length`` body) on a connection kept open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += _received(connection)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")[1:]
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += _received(connection)
    assert len(body) == length  # nothing of a next answer
    return head + b"\r\n\r\n" + body


def _answers(connection: socket.socket, count: int) -> list[bytes]:
    """``count`` whole answers on a connection kept open (pipelined answers may arrive in
    one read)."""
    received, answers = b"", []
    while len(answers) < count:
        head, found, rest = received.partition(b"\r\n\r\n")
        lengths = [
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")[1:]
            if line.startswith(b"content-length:")
        ]
        if found and lengths and len(rest) >= lengths[0]:
            answers.append(head + b"\r\n\r\n" + rest[: lengths[0]])
            received = rest[lengths[0] :]
            continue
        received += _received(connection)
    assert received == b""  # nothing of a further answer
    return answers


def _error(answer: bytes) -> tuple[bytes, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return head.split(b"\r\n")[0], orjson.loads(body)["error"]


@pytest.mark.slow
def test_headers_that_stall_get_a_408_and_the_connection_closes(server: int) -> None:
    # (the socket's own timeout, 10 x the server's, fails the test if no answer comes)
    connection = _connect(server)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished

    status, error = _error(_until_closed(connection))

    assert status == b"HTTP/1.1 408 Request Timeout"
    assert error["code"] == "header_timeout"


@pytest.mark.slow
def test_a_connection_that_never_asks_is_closed_without_an_answer(server: int) -> None:
    connection = _connect(server)

    assert _until_closed(connection) == b""  # closed before the socket's own timeout


@pytest.mark.slow
@pytest.mark.parametrize(
    "reads",
    [
        [b"GET /healthz?" + b"q" * MAX_HEADER_BYTES + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
        [b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 0123456789\r\n" * 300],
        [b"GET /healthz HTTP/1.1\r\nX-Big: aaaa", b"a" * 1000, b"a" * MAX_HEADER_BYTES],
    ],
    ids=["long-target", "many-headers", "one-header-that-never-ends"],
)
def test_headers_over_the_limit_get_a_431_before_they_end(server: int, reads: list[bytes]) -> None:
    connection = _connect(server)
    for read in reads:  # never a blank line: refused without waiting for the end
        connection.sendall(read)
        time.sleep(0.1)  # one read each on the server

    status, error = _error(_until_closed(connection))

    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert error["code"] == "headers_too_large"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\x01b\r\n\r\n",
    ],
    ids=["broken-chunk-size", "two-lengths", "length-and-chunked", "control-character"],
)
def test_a_request_that_is_not_http_gets_the_json_400(server: int, request_bytes: bytes) -> None:
    connection = _connect(server)
    connection.sendall(request_bytes)

    status, error = _error(_until_closed(connection))

    assert status == b"HTTP/1.1 400 Bad Request"
    assert error["code"] == "invalid_http"


@pytest.mark.slow
def test_ordinary_requests_are_untouched(server: int) -> None:
    # A client that opens its connection ahead of use (a pool) and asks within the
    # header timeout is answered: the timeout is not cut short for a silent connection.
    early = _connect(server)
    time.sleep(HEADER_TIMEOUT / 2)
    early.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _until_closed(early).startswith(b"HTTP/1.1 200 ")

    pieces = _connect(server)
    pieces.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    time.sleep(HEADER_TIMEOUT / 3)
    pieces.sendall(b"st: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _until_closed(pieces).startswith(b"HTTP/1.1 200 ")

    # A keep-alive connection may stay quiet between requests for longer than the header
    # timeout (uvicorn's keep-alive timeout, 5 s, governs that).
    kept = _connect(server)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert _one_answer(kept).startswith(b"HTTP/1.1 200 ")
    time.sleep(1.5 * HEADER_TIMEOUT)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _until_closed(kept).startswith(b"HTTP/1.1 200 ")

    # A body far larger than the header limit, in the same packets as the headers.
    body = orjson.dumps({"items": example_items(20)})
    assert len(body) > 4 * MAX_HEADER_BYTES
    batch = _connect(server)
    head = (
        "POST /v1/score/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    batch.sendall(head.encode() + body)
    answer = _until_closed(batch)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(orjson.loads(answer.partition(b"\r\n\r\n")[2])["results"]) == 20


def _head_only(connection: socket.socket) -> bytes:
    """The head of an answer that has no body (an answer to ``HEAD``)."""
    received = b""
    while not received.endswith(b"\r\n\r\n"):
        received += _received(connection)
    return received


@pytest.mark.slow
def test_answers_without_a_body_and_interim_answers_keep_the_connection_in_step(
    server: int,
) -> None:
    # Given one keep-alive connection
    connection = _connect(server)
    # When it asks HEAD, an answer with no body, then GET
    connection.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = _head_only(connection)
    # Then the head comes alone, and the next answer follows it, nothing between
    assert head.startswith(b"HTTP/1.1 ")
    assert b"content-length:" in head.lower()
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert _one_answer(connection).startswith(b"HTTP/1.1 200 ")
    # When a scoring call waits for "100 Continue" before it sends its body
    body = orjson.dumps(EXAMPLE_REQUEST)
    connection.sendall(
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    # Then the interim answer comes first, alone, and the score after the body
    assert _head_only(connection) == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.sendall(body)
    answer = _one_answer(connection)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0 <= orjson.loads(answer.partition(b"\r\n\r\n")[2])["probability"] <= 1
    # When the last request, a HEAD, closes the connection
    connection.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    # Then its head is written before the connection closes
    last = _until_closed(connection)
    assert last.startswith(b"HTTP/1.1 ")
    assert last.endswith(b"\r\n\r\n")
    assert last.count(b"HTTP/1.1") == 1


def _trickled_until_closed(connection: socket.socket, seconds: float) -> float:
    """Send a byte every tenth of a second until the server closes the connection (or
    ``seconds`` pass); how long it stayed open."""
    started = time.monotonic()
    connection.settimeout(0.1)
    while time.monotonic() - started < seconds:
        try:
            connection.sendall(b" ")
            if connection.recv(65536) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset: the server closed it while bytes were still coming
            break
    connection.close()
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("target", [b"GET /healthz", b"POST /no-such-route"])
def test_a_body_trickled_after_its_answer_cannot_hold_the_connection(
    server: int, target: bytes
) -> None:
    # Given a request declaring a large body to a route that answers without reading it
    connection = _connect(server)
    connection.sendall(target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n")
    assert _one_answer(connection).split(b" ")[1] in (b"200", b"404")
    # When the client goes on sending the body a byte at a time (each byte would reset
    # uvicorn's keep-alive timer)
    open_for = _trickled_until_closed(connection, seconds=20 * HEADER_TIMEOUT)
    # Then the connection is closed once the header timeout (and one sweep) has passed
    assert open_for < 3 * HEADER_TIMEOUT


@pytest.mark.slow
def test_a_body_that_ends_after_its_answer_keeps_the_connection_for_the_next_request(
    server: int,
) -> None:
    connection = _connect(server)
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\n\r\nab")
    assert _one_answer(connection).startswith(b"HTTP/1.1 200 ")
    time.sleep(HEADER_TIMEOUT / 3)
    connection.sendall(b"cdef")  # the body's end, within the header timeout
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _until_closed(connection).startswith(b"HTTP/1.1 200 ")


@pytest.mark.slow
def test_a_pipelined_request_whose_body_ends_late_leaves_keep_alive_as_it_was(
    server: int,
) -> None:
    # Given two scoring calls pipelined, the second's body ending a moment later
    body = orjson.dumps(EXAMPLE_REQUEST)
    post = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    connection = _connect(server)
    connection.sendall(post + body + post + body[:50])
    time.sleep(HEADER_TIMEOUT / 3)
    connection.sendall(body[50:])
    assert [answer.split(b" ")[1] for answer in _answers(connection, 2)] == [b"200", b"200"]
    # When the connection then stays quiet longer than the header timeout (less than
    # uvicorn's keep-alive), as between a client's calls
    time.sleep(1.5 * HEADER_TIMEOUT)
    # Then its next call is answered: no body was still arriving after its answer
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert _until_closed(connection).startswith(b"HTTP/1.1 200 ")


MAX_CONNECTIONS = 3
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def small_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = {"SRL_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    yield from _serving(model_dir, tmp_path_factory.mktemp("connections"), settings)


def _served(port: int) -> socket.socket:
    """A new keep-alive connection that has had one request answered 200."""
    connection = _connect(port)
    connection.sendall(HEALTH)
    assert _one_answer(connection).startswith(b"HTTP/1.1 200 ")
    return connection


@pytest.mark.slow
def test_a_connection_beyond_the_limit_gets_a_503_and_the_others_stay_served(
    small_server: int,
) -> None:
    # Given a worker that already serves as many connections as it may
    served = [_served(small_server) for _ in range(MAX_CONNECTIONS)]

    # When one more connection asks
    extra = _connect(small_server)
    extra.sendall(HEALTH)
    answer = _until_closed(extra)

    # Then it gets a JSON 503 that says to retry, and is closed
    status, error = _error(answer)
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert error["code"] == "server_busy"
    assert b"retry-after: 1" in answer.partition(b"\r\n\r\n")[0].lower()
    # while the connections already open are served as before
    for connection in served:
        connection.sendall(HEALTH)
        assert _one_answer(connection).startswith(b"HTTP/1.1 200 ")

    # And once one of them closes, a new connection is served again
    served.pop().close()
    deadline = time.monotonic() + 5
    while True:
        retry = _connect(small_server)
        retry.sendall(HEALTH)
        first = _one_answer(retry)
        if first.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
            break
        retry.close()  # the server may not have seen the close yet
        time.sleep(0.05)
    assert first.startswith(b"HTTP/1.1 200 ")
    for connection in [*served, retry]:
        connection.close()


@pytest.mark.slow
def test_a_websocket_handshake_is_an_http_request_and_its_query_is_not_logged(
    model_dir: Path, tmp_path: Path
) -> None:
    # Given srl serve, which has no WebSocket route
    with contextmanager(_serving)(model_dir, tmp_path, {}) as port:
        # When a client asks to open one, a personal value in its query
        answer = websocket_handshake(port, "/v1/score?email=zz.secret%40example.org")
    # Then it is answered as the HTTP request it is, in the API's JSON, and logged without it
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert orjson.loads(body)["error"]["code"] == "method_not_allowed"
    written = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert "zz.secret" not in written
    assert "No supported WebSocket library" not in written  # it is installed, and unused
