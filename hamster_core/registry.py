"""Name -> factory registries, so a parameter or launch argument picks a backend or policy."""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """`builtin_modules` register the built-in entries when imported; they load on first lookup, so
    importing a registry stays cheap and free of import cycles. As a mapping (name -> module), only the module of
    the entry looked up is imported: the training-free policy never pays for torch (~1 s, ~200 MB)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] | dict[str, str] = ()):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._lazy: dict[str, str] = dict(builtin_modules) if isinstance(builtin_modules, dict) else {}
        self._builtin_modules = () if isinstance(builtin_modules, dict) else tuple(builtin_modules)

    def _load_builtins(self) -> None:
        modules, self._builtin_modules = self._builtin_modules, ()
        for module in modules:
            importlib.import_module(module)

    def register(self, name: str):
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return decorator

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(set(self._factories) | set(self._lazy))

    def get(self, name: str) -> Callable[..., T]:
        self._load_builtins()
        if name not in self._factories and name in self._lazy:
            module = self._lazy[name]
            importlib.import_module(module)
            if name not in self._factories:
                raise ValueError(f"{self.kind} {name!r}: importing {module} did not register it")
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._factories[name]

    def create(self, name: str, **config) -> T:
        return self.get(name)(**config)
