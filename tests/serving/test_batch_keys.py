"""Key hashing and look-ups used to route an export into chunks without loading it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.key_hashing import KeyIndex, repeated, string_hashes

texts = st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(values=texts)
def test_a_value_hashes_the_same_whatever_its_neighbours(values: list[str | None]) -> None:
    together = string_hashes(pa.array(values, pa.string()))

    alone = [string_hashes(pa.array([v], pa.string()))[0] for v in values]

    assert together.tolist() == [int(h) for h in alone]


@settings(max_examples=60, deadline=None)
@given(reference=texts, wanted=texts)
def test_key_index_finds_first_positions_like_arrow(
    reference: list[str | None], wanted: list[str | None]
) -> None:
    index = KeyIndex(pa.array(reference, pa.string()))

    found = index.positions_of(pa.array(wanted, pa.string()))

    present = [r for r in reference if r is not None]
    expected = [reference.index(w) if w is not None and w in present else -1 for w in wanted]
    assert found.tolist() == expected


def test_colliding_hashes_are_looked_up_exactly() -> None:
    index = KeyIndex(pa.array(["a", "b", "c", "a"]))
    index.ambiguous = np.unique(string_hashes(pa.array(["a", "b"])))

    found = index.positions_of(pa.chunked_array([pa.array(["b", "a", "zz", None])]))

    assert found.tolist() == [1, 0, -1, -1]


def test_repeated_hashes_are_reported_once() -> None:
    hashes = np.array([5, 1, 5, 9, 1, 5], dtype=np.uint64)

    assert repeated(hashes).tolist() == [1, 5]


def test_hashes_of_ids_rarely_collide() -> None:
    ids = pc.binary_join_element_wise("A", pa.array(np.arange(200_000).astype(str)), "")

    assert repeated(string_hashes(ids)).size == 0
