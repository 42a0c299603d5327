"""The layers, read from every module's imports (docs/architecture.md): core -> ROS layer -> nodes and robot
adapters -> applications, nothing imports upward or sideways between nodes, and no function-local import
hides a cycle. Pins the back-edges issue 16 removed (node packages importing the simulator, demo <-> runner)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE, ROS, NODE, APP = "core", "ros", "node", "application"
PACKAGES = {
    "hamster_core": CORE,
    "hamster_ros": ROS,
    "hamster_vlm_node": NODE, "perception_node": NODE, "policy_node": NODE, "hamster_franka": NODE,
    "hamster_sim": NODE,
    "hamster_bag": APP, "hamster_apps": APP,
}
MESSAGES = "hamster_msgs"
ROS_ONLY = ("rclpy", "rosidl_runtime_py", "rosgraph_msgs", "std_msgs", "sensor_msgs", "geometry_msgs", "std_srvs",
            "visualization_msgs", "diagnostic_msgs", "rcl_interfaces", "builtin_interfaces", "action_msgs",
            "franka_msgs", "tf2_msgs", "launch", "launch_ros", "ament_index_python", MESSAGES)


def allowed(importer: str, imported: str) -> bool:
    """May a module of package `importer` import package `imported`? (Both top-level names.)"""
    layer = PACKAGES[importer]
    if importer == imported or layer == APP:
        return True
    if layer == CORE:
        return False
    if layer == ROS:
        return imported in ("hamster_core", MESSAGES)
    return imported in ("hamster_core", "hamster_ros", MESSAGES)


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(name: str, path: Path):
    """(imported module, line, function-local) for every absolute or relative import in the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    local_lines = {node.lineno for function in ast.walk(tree)
                   if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, node.lineno in local_lines
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield f"{base}.{alias.name}", node.lineno, node.lineno in local_lines
            yield base, node.lineno, node.lineno in local_lines


ALL = dict(modules())


def project_module(imported: str) -> str | None:
    """The project module an import refers to (longest known prefix), or None for a third-party one."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in ALL:
            return ".".join(parts[:end])
    return None


def test_every_package_is_assigned_a_layer():
    on_disk = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert on_disk == set(PACKAGES), "a new package needs its layer here and in docs/architecture.md"


@pytest.mark.parametrize("name", sorted(ALL))
def test_imports_follow_the_layers(name):
    importer = name.split(".")[0]
    violations = []
    for imported, line, _ in imports(name, ALL[name]):
        top = imported.split(".")[0]
        if PACKAGES[importer] == CORE and top in ROS_ONLY:
            violations.append(f"line {line}: {imported} (the core is ROS-free)")
        elif (top in PACKAGES or top == MESSAGES) and not allowed(importer, top):
            violations.append(f"line {line}: {imported} ({PACKAGES[importer]} {importer} may not import "
                              f"{PACKAGES.get(top, 'messages')} {top})")
    assert not violations, f"{name}:\n" + "\n".join(violations)


def test_no_import_cycle_even_through_function_local_imports():
    # A function-local import that dodges a cycle shows here: every import counts as an edge.
    graph = {name: set() for name in ALL}
    for name, path in ALL.items():
        for imported, _, _ in imports(name, path):
            target = project_module(imported)
            if target is not None and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(sorted(cycle)) for cycle in cycles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan: the components with more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_rules_catch_the_back_edges_this_layout_removed():
    # Each of these existed before issue 16; the rules must refuse them.
    assert not allowed("hamster_vlm_node", "hamster_sim")     # oracle backend imported the simulator
    assert not allowed("perception_node", "hamster_sim")      # sim_ground_truth detector
    assert not allowed("hamster_vlm_node", "perception_node")  # grounding used perception's pipeline
    assert not allowed("hamster_ros", "hamster_vlm_node")     # graph named the VLM registry
    assert not allowed("hamster_core", "hamster_ros")
    assert allowed("hamster_apps", "hamster_sim")
    assert strongly_connected({"hamster_apps.demo": {"hamster_apps.runner"},
                               "hamster_apps.runner": {"hamster_apps.demo"}}) == [
        {"hamster_apps.demo", "hamster_apps.runner"}]


def test_the_architecture_doc_names_every_package():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for package in PACKAGES:
        assert f"`{package}/`" in text, package
