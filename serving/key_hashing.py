"""64-bit hashes of Arrow string columns, to find repeated keys without Python strings.

Used to spot primary keys that may repeat across a whole export while holding only eight
bytes per row. A hash is a filter, never a verdict: rows whose hash repeats are compared
by their exact key afterwards, so a collision costs a look-up, never a wrong answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_WORD = 8


def string_hashes(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per value of a string column (missing values hash like "").

    A value's hash depends on its bytes only (never on its neighbours): its 8-byte words
    are mixed in one after the other, then its length.
    """
    if isinstance(array, pa.ChunkedArray):
        parts = [string_hashes(chunk) for chunk in array.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    offsets, data = _buffers(array)
    lengths = np.diff(offsets)
    if len(lengths) and lengths.min() == lengths.max():
        hashes = _equal_length_hashes(data, len(lengths), int(lengths[0]))
    else:
        hashes = _word_hashes(data, offsets[:-1] - offsets[0], lengths)
    return _mix(hashes ^ (lengths.astype(np.uint64) * _MIX_2))


def repeated(hashes: np.ndarray) -> np.ndarray:
    """The sorted distinct hash values that occur more than once."""
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    return np.unique(ordered[1:][same])


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    buffers = array.buffers()
    stop = array.offset + len(array) + 1
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset : stop]
    if buffers[2] is None or len(array) == 0:
        return offsets, np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(buffers[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return offsets, data


def _equal_length_hashes(data: np.ndarray, count: int, length: int) -> np.ndarray:
    """The fast path when every value has the same length (typical of ids)."""
    words = max(1, -(-length // _WORD))
    padded = np.zeros((count, words * _WORD), dtype=np.uint8)
    padded[:, :length] = data.reshape(count, length)
    columns = padded.view(np.uint64)
    hashes = np.zeros(count, dtype=np.uint64)
    for word in range(words):
        hashes = _mix(hashes ^ columns[:, word])
    return hashes


def _word_hashes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mix each value's words in, word by word, for the values that are that long."""
    words = np.maximum(1, -(-lengths // _WORD))
    hashes = np.zeros(len(lengths), dtype=np.uint64)
    padded = np.concatenate([data, np.zeros(_WORD, dtype=np.uint8)])
    ends = starts + lengths
    for word in range(int(words.max()) if len(words) else 0):
        active = np.flatnonzero(words > word)
        position = starts[active, None] + word * _WORD + np.arange(_WORD)
        inside = position < ends[active, None]
        chunk = np.where(inside, padded[np.minimum(position, len(data))], 0).astype(np.uint8)
        hashes[active] = _mix(hashes[active] ^ chunk.view(np.uint64).ravel())
    return hashes


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: every input bit affects every output bit."""
    values = values ^ (values >> np.uint64(30))
    values = values * _MIX_1
    values = values ^ (values >> np.uint64(27))
    values = values * _MIX_2
    return values ^ (values >> np.uint64(31))


class KeyIndex:
    """Where each value of a string column first occurs in a reference column, found by hash.

    The reference's hashes go into one hash table once (the first position of each hash);
    looking a batch up is a hash, a table look-up and an exact comparison of the match, so
    a wrong match is impossible. Reference values whose hashes collide are looked up exactly.
    """

    def __init__(self, keys: pa.Array) -> None:
        self.keys = keys.cast(pa.string())
        hashes = string_hashes(self.keys)
        order = np.lexsort((np.arange(len(hashes)), hashes))
        order = order[np.asarray(self.keys.is_valid())[order]]
        ordered = hashes[order]
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self.table = pd.Index(ordered[first])
        self.table.get_indexer(ordered[:1])  # build the hash table now, not in a worker thread
        self.positions = order[first]
        self.ambiguous = self._colliding(ordered, order)

    def _colliding(self, ordered: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Hashes shared by different reference values (almost always none)."""
        shared = repeated(ordered)
        if shared.size == 0:
            return shared
        rows = np.isin(ordered, shared)
        values = self.keys.take(pa.array(order[rows])).to_pylist()
        seen: dict[int, set[str]] = {}
        for value_hash, value in zip(ordered[rows].tolist(), values, strict=True):
            seen.setdefault(value_hash, set()).add(value)
        return np.array(sorted(h for h, v in seen.items() if len(v) > 1), dtype=np.uint64)

    def positions_of(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The first position of each value in the reference (-1 when absent or missing)."""
        values = values.cast(pa.string())
        if len(self.positions) == 0:
            return np.full(len(values), -1, dtype=np.int64)
        hashes = string_hashes(values)
        slot = self.table.get_indexer(hashes)
        candidate = self.positions[np.maximum(slot, 0)]
        same = pc.equal(values, self.keys.take(pa.array(np.maximum(candidate, 0))))
        found = (slot >= 0) & np.asarray(same.fill_null(False))
        result = np.where(found, candidate, -1).astype(np.int64)
        if self.ambiguous.size:
            exact = np.flatnonzero(np.isin(hashes, self.ambiguous))
            looked_up = pc.index_in(values.take(pa.array(exact)), value_set=self.keys)
            result[exact] = np.asarray(looked_up.fill_null(-1), dtype=np.int64)
        return result
