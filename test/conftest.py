"""Test-wide environment: DDS stays on this machine, one ROS domain per test session, headless rendering,
no model hub access; ROS logs and everything else a test writes go to temporary folders."""
import os

from hamster_ros.dds import confine_dds_to_this_machine  # noqa: E402  (imports no ROS library)

confine_dds_to_this_machine(os.environ)
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"


import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Hypothesis keeps no example database: tests write only to temporary folders. A failure still prints the
# falsifying example and how to reproduce it.
settings.register_profile("hamster", database=None)
settings.load_profile("hamster")


@pytest.fixture(scope="session", autouse=True)
def temporary_storage(tmp_path_factory, pytestconfig):
    """rclpy in this process and every node process started from it log into this session's temporary folder, not
    ~/.ros/log (unless ROS_LOG_DIR is set already). Hypothesis keeps its caches (unicode tables, ~3 s to build)
    beside the sessions' folders in pytest's temporary root, where the next session finds them, not in
    .hypothesis/ of the working directory; with --basetemp, in this session's folder."""
    from hypothesis.configuration import set_hypothesis_home_dir

    ours = "ROS_LOG_DIR" not in os.environ
    if ours:
        os.environ["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))
    if pytestconfig.option.basetemp is None:   # /tmp/pytest-of-<user>/pytest-<n>: its parent is pytest's own
        hypothesis_home = tmp_path_factory.getbasetemp().parent / "hypothesis"
        hypothesis_home.mkdir(exist_ok=True)
    else:
        hypothesis_home = tmp_path_factory.mktemp("hypothesis")
    set_hypothesis_home_dir(hypothesis_home)
    yield
    set_hypothesis_home_dir(None)
    if ours:
        del os.environ["ROS_LOG_DIR"]


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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item (item.report_call), so a fixture's teardown knows the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
