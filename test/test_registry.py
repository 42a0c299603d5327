"""Registries by name: entries load on first lookup, and a lazy one loads only its own module."""
import subprocess
import sys

import pytest

from hamster_core.registry import Registry


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


def test_a_lazy_entry_whose_module_does_not_register_it_is_named():
    registry = Registry("widget", {"gear": "json"})  # json registers nothing here
    with pytest.raises(ValueError, match="widget 'gear': importing json did not register it"):
        registry.get("gear")


def test_unknown_names_list_the_known_ones():
    registry = Registry("widget", {"gear": "json"})
    with pytest.raises(ValueError, match="unknown widget 'cog'; known: gear"):
        registry.get("cog")
