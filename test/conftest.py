"""Test-wide environment: DDS stays on this machine, one ROS domain per test session, headless rendering,
no model hub access."""
import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def franka_msgs_env(tmp_path_factory):
    """Environment for node processes with the franka_msgs TEST STAND-IN on their paths (issue 7): built once per
    session into a temporary prefix (55-125 s on two shared cores), or into HAMSTER_FRANKA_STANDIN_PREFIX when
    that is set (reused there while its sources are unchanged). The test process itself never imports it."""
    import time

    from hamster_franka.franka_standin import build_standin
    from hamster_ros.interfaces import franka_msgs_available
    prefix = os.environ.get("HAMSTER_FRANKA_STANDIN_PREFIX") or tmp_path_factory.mktemp("franka_msgs_standin")
    started = time.monotonic()
    env = build_standin(prefix)
    env["HAMSTER_FRANKA_STANDIN_PREFIX"] = str(prefix)
    print(f"franka_msgs stand-in ready in {time.monotonic() - started:.1f} s ({prefix})")
    assert franka_msgs_available(env) and not franka_msgs_available(), \
        "the stand-in must be importable by the nodes only, never by the test process (or the venv)"
    return env
