"""Values derived from a configuration object, computed once per object.

Frozen pydantic configurations holding dicts are not hashable, so ``functools.cache``
cannot key on them. ``per_object`` keys on identity instead and keeps each object alive
while its value is cached, so an identity is never reused for a different object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Source = TypeVar("Source")
Derived = TypeVar("Derived")


class per_object(Generic[Source, Derived]):  # noqa: N801 - used as a decorator
    """Decorate ``build(source)`` so it runs once per source object (at most ``size`` kept)."""

    def __init__(self, build: Callable[[Source], Derived], size: int = 8) -> None:
        self._build = build
        self._size = size
        self._values: dict[int, tuple[Source, Derived]] = {}
        self.__doc__ = build.__doc__

    def __call__(self, source: Source) -> Derived:
        """The value derived from ``source`` (built on first use)."""
        cached = self._values.get(id(source))
        if cached is not None and cached[0] is source:
            return cached[1]
        if len(self._values) >= self._size:
            self._values.clear()
        value = self._build(source)
        self._values[id(source)] = (source, value)
        return value
