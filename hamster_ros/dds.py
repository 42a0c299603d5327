"""DDS stays on this machine: discovery limited to localhost, and a Fast DDS profile whose UDP transport is bound
to loopback only (rmw_fastrtps adds shared memory), so no DDS receive socket is on an address the network reaches."""
from __future__ import annotations

from typing import MutableMapping

from hamster_ros.package_files import CONFIG_DIR

LOOPBACK_PROFILE = CONFIG_DIR / "fastdds_loopback.xml"


def confine_dds_to_this_machine(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Set the environment a ROS process reads at `rclpy.init`. A Fast DDS profile file the user chose already
    (FASTDDS_DEFAULT_PROFILES_FILE) is kept: a multi-computer setup brings its own."""
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LOOPBACK_PROFILE))
    return env
