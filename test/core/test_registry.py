"""Registries by name, filled from entry points: entries load on first lookup, a lazy one loads only its own
module, and a package outside this one plugs in through the same groups."""
import subprocess
import sys
import textwrap

import pytest

from hamster_core.registry import Registry


@pytest.mark.slow  # a fresh interpreter imports policy_node and torch (~4 s)
def test_the_path_follower_never_imports_torch():
    # Regression: looking up any policy imported every policy module, so the training-free path follower's node
    # paid for torch (~1 s and ~200 MB in the soak benchmark).
    code = ("import sys, policy_node.node\n"
            "from hamster_core.policies.base import POLICIES\n"
            "assert POLICIES.names() == ['3dda', 'path_follower', 'rvt2'], POLICIES.names()\n"
            "POLICIES.get('path_follower')\n"
            "assert 'torch' not in sys.modules\n"
            "POLICIES.get('rvt2')\n"
            "assert 'torch' in sys.modules\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def write_lab_package(root, registers: bool = True):
    """A lab's own installed package: a module and the dist-info whose entry point names it."""
    (root / "lab_policies.py").write_text(textwrap.dedent(f"""
        from hamster_core.policies.base import POLICIES, Policy, PolicyOutput

        {'@POLICIES.register("lab_policy")' if registers else ''}
        class LabPolicy(Policy):
            def select_action(self, observation):
                return PolicyOutput([], done=True)
        """))
    info = root / "lab_policies-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-policies\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hamster_runtime.policies]\nlab_policy = lab_policies\n")


def run_with(root, code: str) -> subprocess.CompletedProcess:
    import os
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_a_lab_package_plugs_a_policy_in_through_its_entry_point(tmp_path):
    write_lab_package(tmp_path)
    run = run_with(tmp_path, "from hamster_core.policies.base import POLICIES\n"
                             "assert 'lab_policy' in POLICIES.names(), POLICIES.names()\n"
                             "print(POLICIES.get('lab_policy').__module__)\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "lab_policies"


def test_an_entry_whose_module_does_not_register_it_is_named(tmp_path):
    write_lab_package(tmp_path, registers=False)
    run = run_with(tmp_path, "from hamster_core.policies.base import POLICIES\nPOLICIES.get('lab_policy')\n")
    assert run.returncode != 0
    assert "policy 'lab_policy': importing lab_policies (entry point group hamster_runtime.policies) did not " \
           "register it" in run.stderr


def test_unknown_names_list_the_known_ones():
    registry = Registry("widget", "hamster_runtime.policies")
    with pytest.raises(ValueError, match=r"unknown widget 'cog'; known: 3dda, path_follower, rvt2"):
        registry.get("cog")


def test_a_group_outside_the_project_namespace_is_refused():
    with pytest.raises(ValueError, match="must start with 'hamster_runtime.'"):
        Registry("widget", "console_scripts")
