"""Security basics enforced on the source tree: nothing evaluates or unpickles text or bytes it is given.

HAMSTER's released client parses model answers with `eval` (DESIGN.md §5); this test pins that no code of
ours does anything like it, now or later.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("hamster_core", "hamster_ros", "hamster_sim", "hamster_vlm_node", "perception_node", "policy_node",
               "hamster_franka", "hamster_bag", "hamster_apps", "launch", "bench", "tools")
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib"}


def python_files():
    for directory in SOURCE_DIRS:
        yield from sorted((ROOT / directory).rglob("*.py"))


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            # The builtins by bare name or as builtins.<name>; methods of the same name (re.compile,
            # torch's module.eval() which only switches off dropout) are something else.
            builtin = isinstance(func, ast.Name) or (isinstance(func, ast.Attribute)
                                                     and getattr(func.value, "id", "") == "builtins")
            if name in FORBIDDEN_CALLS and builtin:
                found.append(f"{where}: call to {name}()")
            if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "yaml":
                found.append(f"{where}: yaml.load (use yaml.safe_load)")
            if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch":
                if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords):
                    found.append(f"{where}: torch.load without weights_only=True unpickles arbitrary objects")
            if any(k.arg == "shell" and getattr(k.value, "value", None) is True for k in node.keywords):
                found.append(f"{where}: subprocess with shell=True")
            if any(k.arg == "trust_remote_code" and getattr(k.value, "value", None) is not False
                   for k in node.keywords):
                found.append(f"{where}: trust_remote_code runs code shipped with a checkpoint")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: imports {module}")
    return found


def test_methods_named_like_builtins_are_not_flagged(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("model.eval()\npattern = re.compile('x')\n")
    assert violations(path) == []


def test_source_tree_is_scanned():
    files = list(python_files())
    assert len(files) > 30
    assert ROOT / "hamster_core" / "path2d.py" in files
    # Every package of the project, whatever the layout: a new one is scanned or this fails.
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages <= set(SOURCE_DIRS), sorted(packages - set(SOURCE_DIRS))


@pytest.mark.parametrize("snippet, reason", [
    ("eval(text)", "eval"),
    ("builtins.exec(code)", "exec"),
    ("import pickle", "pickle"),
    ("yaml.load(f)", "yaml.load"),
    ("torch.load(path)", "weights_only"),
    ("subprocess.run(cmd, shell=True)", "shell=True"),
    ("AutoModel.from_pretrained(p, trust_remote_code=True)", "trust_remote_code"),
])
def test_scanner_catches_each_forbidden_pattern(tmp_path, snippet, reason):
    path = tmp_path / "probe.py"
    path.write_text(snippet + "\n")
    assert any(reason in v for v in violations(path))


def test_no_eval_exec_pickle_or_unsafe_loading_anywhere():
    found = [v for path in python_files() for v in violations(path)]
    assert not found, "\n".join(found)
