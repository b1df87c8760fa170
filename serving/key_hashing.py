"""64-bit hashes of Arrow string columns, to find repeated keys without Python strings.

Used to spot primary keys that may repeat across a whole export while holding only eight
bytes per row. A hash is a filter, never a verdict: rows whose hash repeats are compared
by their exact key afterwards, so a collision costs a look-up, never a wrong answer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_PRIME = 0x100000001B3
_MAX_PADDED_BYTES = 64


def string_hashes(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per value of a string column (missing values hash like "")."""
    if isinstance(array, pa.ChunkedArray):
        parts = [string_hashes(chunk) for chunk in array.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    offsets, data = _buffers(array)
    lengths = np.diff(offsets)
    starts = offsets[:-1] - offsets[0]
    longest = int(lengths.max()) if len(lengths) else 0
    if longest <= _MAX_PADDED_BYTES:
        hashes = _padded_hashes(data, starts, lengths, longest)
    else:
        hashes = _polynomial_hashes(data, starts, lengths, longest)
    return _mix(hashes ^ (lengths.astype(np.uint64) * _MIX_2))


def repeated(hashes: np.ndarray) -> np.ndarray:
    """The sorted distinct hash values that occur more than once."""
    ordered = np.sort(hashes)
    same = ordered[1:] == ordered[:-1]
    return np.unique(ordered[1:][same])


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    if buffers[2] is None or len(array) == 0:
        return offsets, np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(buffers[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return offsets, data


def _padded_hashes(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, longest: int
) -> np.ndarray:
    words = max(1, (longest + 7) // 8)
    padded = np.zeros((len(lengths), words * 8), dtype=np.uint8)
    if len(lengths) and lengths.min() == longest:
        padded[:, :longest] = data.reshape(len(lengths), longest)
    elif len(data):
        rows = np.repeat(np.arange(len(lengths)), lengths)
        padded[rows, np.arange(len(data)) - np.repeat(starts, lengths)] = data
    columns = padded.view(np.uint64)
    hashes = np.zeros(len(lengths), dtype=np.uint64)
    for word in range(words):
        hashes = _mix(hashes ^ columns[:, word])
    return hashes


def _polynomial_hashes(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, longest: int
) -> np.ndarray:
    powers = np.array([pow(_PRIME, k, 1 << 64) for k in range(longest)], dtype=np.uint64)
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    weighted = (data.astype(np.uint64) + np.uint64(1)) * powers[position]
    hashes = np.zeros(len(lengths), dtype=np.uint64)
    filled = lengths > 0
    if filled.any():
        hashes[filled] = np.add.reduceat(weighted, starts[filled])
    return hashes


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: every input bit affects every output bit."""
    values = values ^ (values >> np.uint64(30))
    values = values * _MIX_1
    values = values ^ (values >> np.uint64(27))
    values = values * _MIX_2
    return values ^ (values >> np.uint64(31))
