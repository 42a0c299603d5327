"""Name -> factory registries, so a parameter or launch argument picks a backend or policy.

Entries are found through Python entry points: each kind has a group (e.g. `hamster_runtime.policies`) whose
entries map a name to the module that registers it. This package declares its own in setup.py; a lab's package
declares its policy or backend the same way and is found without any change here. The module of an entry is
imported on first lookup only, so importing a registry stays cheap (the training-free policy never pays for
torch) and the core names no package above it.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

ENTRY_POINT_PREFIX = "hamster_runtime."


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str):
        if not group.startswith(ENTRY_POINT_PREFIX):
            raise ValueError(f"entry point group must start with {ENTRY_POINT_PREFIX!r}, got {group!r}")
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}

    def _declared(self) -> dict[str, str]:
        """name -> module, from the installed distributions' entry points of this group."""
        return {entry.name: entry.value.split(":")[0] for entry in entry_points(group=self.group)}

    def register(self, name: str):
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return decorator

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(self._declared()))

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            module = self._declared().get(name)
            if module is None:
                known = self.names()
                hint = "" if known else (": nothing is registered for this Python, so hamster_runtime is not installed "
                                         "in it (run from the project's venv: .venv/bin/...)")
                raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(known) or 'none'} "
                                 f"(entry point group {self.group}){hint}")
            importlib.import_module(module)
            if name not in self._factories:
                raise ValueError(f"{self.kind} {name!r}: importing {module} (entry point group {self.group}) "
                                 f"did not register it")
        return self._factories[name]

    def create(self, name: str, **config) -> T:
        return self.get(name)(**config)
