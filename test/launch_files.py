"""The package's launch files run without ROS 2's launch packages (launch and launch_ros cannot be installed here):
recording stand-ins replace them, so a test sees which arguments a file declares and which nodes and includes it
returns for given argument values, as `ros2 launch` would start them. Also the setup() call of setup.py as an
install sees it (its console scripts and data files), without building or installing anything."""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class LaunchContext:
    def __init__(self, arguments: dict[str, str]):
        self.launch_configurations = dict(arguments)


class LaunchConfiguration:
    def __init__(self, name: str):
        self.name = name

    def perform(self, context: LaunchContext) -> str:
        return context.launch_configurations[self.name]


class IfCondition:
    """launch.conditions.IfCondition: true for "true"/"1", false for "false"/"0" (any case), an error else."""

    def __init__(self, predicate: LaunchConfiguration):
        self.predicate = predicate

    def evaluate(self, context: LaunchContext) -> bool:
        value = self.predicate.perform(context).strip().lower()
        if value not in ("true", "1", "false", "0"):
            raise ValueError(f"IfCondition: {value!r} is no boolean")
        return value in ("true", "1")


class DeclareLaunchArgument:
    def __init__(self, name: str, default_value: str | None = None, description: str = ""):
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction:
    def __init__(self, function):
        self.function = function


class LaunchDescription:
    def __init__(self, entities=()):
        self.entities = list(entities)


class Node:
    """launch_ros.actions.Node: keeps its keyword arguments as attributes (no condition: always started)."""

    def __init__(self, **kwargs):
        self.condition = None
        self.__dict__.update(kwargs)


class PythonLaunchDescriptionSource:
    def __init__(self, path: str):
        self.path = path


class IncludeLaunchDescription:
    def __init__(self, source: PythonLaunchDescriptionSource, launch_arguments=()):
        self.source, self.launch_arguments = source, list(launch_arguments)


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def load_launch_file(path: Path, monkeypatch, shares: dict[str, Path]) -> types.ModuleType:
    """The launch file's module, importing the stand-ins; get_package_share_directory answers from `shares`."""
    stand_ins = {
        "launch": _module("launch", LaunchDescription=LaunchDescription, LaunchContext=LaunchContext),
        "launch.actions": _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument,
                                  IncludeLaunchDescription=IncludeLaunchDescription, OpaqueFunction=OpaqueFunction),
        "launch.conditions": _module("launch.conditions", IfCondition=IfCondition),
        "launch.substitutions": _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration),
        "launch.launch_description_sources": _module("launch.launch_description_sources",
                                                     PythonLaunchDescriptionSource=PythonLaunchDescriptionSource),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=Node),
    }
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    import ament_index_python.packages as packages

    def share(package: str) -> str:
        if package not in shares:
            raise packages.PackageNotFoundError(package)
        return str(shares[package])
    monkeypatch.setattr(packages, "get_package_share_directory", share)
    spec = importlib.util.spec_from_file_location(path.name.split(".")[0] + "_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_launch(module: types.ModuleType, **arguments: str) -> tuple[dict[str, str], list, LaunchContext]:
    """generate_launch_description() with these argument values (name:=value) over the declared defaults:
    the declared arguments with their defaults, the entities its opaque functions return, and the context."""
    description = module.generate_launch_description()
    declared = {entity.name: entity.default_value for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)}
    unknown = set(arguments) - set(declared)
    assert not unknown, f"not arguments of the launch file: {sorted(unknown)}"
    context = LaunchContext({**declared, **arguments})
    entities = []
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            entities.extend(entity.function(context) or [])
        elif not isinstance(entity, DeclareLaunchArgument):
            entities.append(entity)
    return declared, entities, context


def setup_keywords() -> dict:
    """The keyword arguments setup.py passes to setuptools.setup(), as an install of this working tree gets them
    (setup.py runs with setup() recording them instead of building anything)."""
    import runpy

    import setuptools

    recorded = {}
    original = setuptools.setup
    setuptools.setup = lambda **keywords: recorded.update(keywords)
    try:
        with contextlib.chdir(ROOT):  # setup.py globs its data files relative to the repository
            runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = original
    assert recorded, "setup.py did not call setuptools.setup()"
    return recorded


def console_scripts() -> dict[str, importlib.metadata.EntryPoint]:
    """Console script name -> its entry point, from setup.py."""
    entries = (importlib.metadata.EntryPoint(*(part.strip() for part in line.split("=", 1)), "console_scripts")
               for line in setup_keywords()["entry_points"]["console_scripts"])
    return {entry.name: entry for entry in entries}
