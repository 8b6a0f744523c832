"""One registry type for every stage: named factories, chosen by name from the API, CLI and service.

Each stage keeps one :class:`Registry` next to its implementations (``guards.GUARDS``,
``attribution.ATTRIBUTIONS``, ``segmentation.SEGMENTERS``, ``counterfactual.SEARCHES``,
``render.RENDERERS``, ``rationale.RATIONALES``, ``pairs.editors.EDITORS``). A plug-in registers a
factory under a name, as a call or as a decorator::

    from safeview.segmentation import SEGMENTERS

    @SEGMENTERS.register("grid")
    def grid(size: int = 16) -> Segmenter: ...

and ``"grid"`` is then accepted by ``safeguard(segmenter="grid")``, ``safeview safeguard
--segmenter grid`` and the service alike.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Named factories of one kind of stage (``kind`` words the error messages).

    ``create(name, **options)`` calls the factory; an unknown name or an option the factory does
    not accept is a :class:`ValueError` naming the kind, the name and what is available.
    ``on_change`` callbacks run after every registration (e.g. to clear a cache of built objects).
    """

    def __init__(self, kind: str, *, sort: bool = True) -> None:
        self.kind = kind
        self._sort = sort
        self._factories: dict[str, Callable[..., T]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []

    @overload
    def register(self, name: str) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F) -> F: ...

    def register(self, name: str, factory: Any = None) -> Any:
        """Make ``factory(**options)`` available as ``name``; without ``factory``, a decorator.

        Registering a name again replaces its factory."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(function: F) -> F:
            if not callable(function):
                raise TypeError(f"{self.kind} {name!r}: factory {function!r} is not callable")
            with self._lock:
                self._factories[name] = function
            for listener in list(self._listeners):
                listener(name)
            return function

        return add if factory is None else add(factory)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` after each registration."""
        self._listeners.append(listener)

    def names(self) -> list[str]:
        """The registered names (sorted, unless the registry keeps registration order)."""
        names = list(self._factories)
        return sorted(names) if self._sort else names

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name`` (``ValueError`` if none)."""
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r} (available: {', '.join(self.names())})"
            ) from None

    def check_options(self, name: str, options: dict[str, Any]) -> None:
        """Raise the ``bad option`` error if ``name``'s factory cannot take ``options`` (by its
        signature; factories taking ``**options`` accept every name)."""
        factory = self.factory(name)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):  # a builtin without a signature: let create() judge
            return
        try:
            signature.bind(**options)
        except TypeError as exc:
            raise ValueError(f"bad option for {self.kind} {name!r}: {exc}") from None

    def create(self, name: str, /, **options: Any) -> T:
        """``name``'s factory called with ``options``."""
        factory = self.factory(name)
        self.check_options(name, options)
        try:
            return factory(**options)
        except TypeError as exc:
            raise ValueError(f"bad option for {self.kind} {name!r}: {exc}") from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()!r})"


__all__ = ["Registry"]
