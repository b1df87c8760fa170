"""Helpers for the API tests' request bodies."""

from __future__ import annotations

import copy
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
