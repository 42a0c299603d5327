"""DDS stays on this machine (issue 21): with the environment the runner, the Makefile and these tests set
(discovery range LOCALHOST and config/fastdds_loopback.xml), a running node receives DDS traffic on loopback
only. Without the profile, the same node listens on 0.0.0.0: anyone on the network could send it targets.

Sockets are read from /proc: the node's socket inodes (/proc/<pid>/fd) looked up in /proc/net/{udp,tcp}(6).
"""
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from hamster_ros.dds import LOOPBACK_PROFILE
from hamster_ros.package_files import CONFIG_DIR
from waiting import wait_until

pytestmark = pytest.mark.graph  # starts a node

NODE = ["-m", "hamster_franka.camera_cloud", "--ros-args", "-p",
        f"calibration_file:={CONFIG_DIR / 'calibration_sim.yaml'}"]


def process_sockets(pid: int) -> list[tuple[str, str, int, int]]:
    """(table, local address, local port, receive queue bytes) of every IP socket the process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("udp", "udp6", "tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            address, port = fields[1].split(":")
            if len(address) == 8:
                address = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
            found.append((table, address, int(port, 16), int(fields[4].split(":")[1], 16)))
    return found


def dds_ports(domain: int) -> set[int]:
    """The RTPS well-known ports of a domain (DDSI-RTPS 9.6.1.1 defaults): discovery multicast and user multicast,
    and the unicast pair of each participant id (a few per test machine)."""
    base = 7400 + 250 * domain
    return {base, base + 1} | {base + offset + 2 * participant for participant in range(32) for offset in (10, 11)}


def start_node(tmp_path, profile: bool):
    domain = 90 + os.getpid() % 40
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=str(tmp_path))
    if not profile:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE")
    process = subprocess.Popen([sys.executable, *NODE], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    # The node is up once it holds its DDS unicast sockets (its participant binds them when it is created).
    wait_until(lambda: process.poll() is not None or any(port in dds_ports(domain)
                                                          for _, _, port, _ in process_sockets(process.pid)),
               "the node's DDS sockets", 60)
    assert process.poll() is None, process.communicate()[0][-2000:]
    time.sleep(1.0)  # endpoints the node creates after its participant (publishers, subscriptions) bind too
    return process, domain


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_the_environment_selects_the_loopback_profile():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(LOOPBACK_PROFILE) and LOOPBACK_PROFILE.is_file()


def test_a_node_receives_dds_traffic_on_loopback_only(tmp_path):
    process, domain = start_node(tmp_path, profile=True)
    try:
        sockets = process_sockets(process.pid)
        print(sockets)
        listening = [s for s in sockets if s[2] in dds_ports(domain)]
        assert listening and all(address == "127.0.0.1" for _, address, _, _ in listening), sockets
        assert not [s for s in sockets if s[0].startswith("tcp")], sockets
        # rmw_fastrtps adds a UDP transport of its own for the LOCALHOST range, and Fast DDS binds that transport's
        # send sockets to every interface (ephemeral ports). The node never reads them: a datagram sent to the one
        # bound to 0.0.0.0 stays in its receive queue. Everything else is on loopback.
        elsewhere = [s for s in sockets if s[1] != "127.0.0.1"]
        assert all(port not in dds_ports(domain) for _, _, port, _ in elsewhere), elsewhere
        for table, address, port, _ in elsewhere:
            if address == "0.0.0.0":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.sendto(b"not rtps", ("127.0.0.1", port))
                wait_until(lambda: next(s[3] for s in process_sockets(process.pid) if s[2] == port) > 0,
                           f"the datagram in the queue of port {port}", 10)
                time.sleep(0.5)
                assert next(s[3] for s in process_sockets(process.pid) if s[2] == port) > 0, "the node read it"
    finally:
        stop(process)


def test_without_the_profile_the_node_listens_on_every_interface(tmp_path):
    """What the profile prevents, so the test above can fail: rmw's own LOCALHOST setting binds DDS's receive
    sockets to 0.0.0.0 (discovery stays local, the sockets do not)."""
    process, domain = start_node(tmp_path, profile=False)
    try:
        sockets = process_sockets(process.pid)
        assert any(address == "0.0.0.0" and port in dds_ports(domain) for _, address, port, _ in sockets), sockets
    finally:
        stop(process)
