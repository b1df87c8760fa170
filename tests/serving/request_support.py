"""Helpers for the API tests' request bodies, and a raw WebSocket handshake."""

from __future__ import annotations

import copy
import socket
from typing import Any

from serving.examples import EXAMPLE_REQUEST


def example_items(count: int) -> list[dict[str, Any]]:
    """``count`` copies of the example request, each its own rejection (a batch scores
    each rejection once)."""
    items = []
    for index in range(count):
        item = copy.deepcopy(EXAMPLE_REQUEST)
        item["rejection"]["rejection_id"] = f"{item['rejection']['rejection_id']}-{index}"
        items.append(item)
    return items


def websocket_handshake(port: int, target: str) -> bytes:
    """Open a WebSocket on ``127.0.0.1:port`` at ``target`` (a raw handshake, as a browser
    sends it); the server's answer: its head and its ``Content-Length`` body (all it sent
    before closing when it gives no length), waiting at most 5 s for any part."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.encode())
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if _whole_answer(received):
                    break
        except TimeoutError:
            pass
    return received


def _whole_answer(received: bytes) -> bool:
    """Whether ``received`` holds a whole answer: its head and as much body as it declares."""
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False  # no length: the answer ends when the server closes the connection
