"""franka_bridge refuses /robot/enable until a controller listens on the target topic with the bridge as its only
publisher (issue 18): franka_ros2 has no controller on the old default topic, and crisp_controllers ignores every
target while a second node publishes there. The bridge runs alone (franka_msgs stand-in); the test plays the
controller and the second publisher."""
import os

import pytest

from hamster_apps.graph import CONFIG_DIR, NodeSpec
from hamster_apps.runner import GraphRunner
from waiting import call_service, wait_until

pytestmark = [pytest.mark.graph, pytest.mark.slow]   # the franka_msgs stand-in build (once per session)

TARGET_TOPIC = "/target_pose"   # crisp_controllers' CartesianController, franka.yaml's default controller profile


def test_enable_is_refused_until_a_controller_alone_takes_the_target_stream(franka_msgs_env, tmp_path):
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import SetBool

    from hamster_ros import interfaces as topics
    from hamster_ros.spinner import BackgroundSpinner

    domain = 60 + os.getpid() % 30
    env = dict(franka_msgs_env, ROS_DOMAIN_ID=str(domain))
    spec = NodeSpec("franka_bridge", "franka_bridge", "hamster_franka.franka_bridge",
                    (str(CONFIG_DIR / "franka.yaml"),), {"use_sim_time": False})
    runner = GraphRunner([spec], tmp_path, env)
    runner.start()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("controller_link_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor)
    enable = node.create_client(SetBool, topics.ROBOT_ENABLE)

    def enable_reply() -> str:
        # Refusing is harmless to repeat, and a just-started bridge's first reply can be lost (CI, stop 25).
        response = call_service(enable, SetBool.Request(data=True), 30,
                                lambda: runner.exited() and pytest.fail(str(runner.exited())), resend_after=5)
        assert not response.success, response.message
        return response.message

    try:
        wait_until(lambda: enable.service_is_ready() or runner.exited(), "the bridge's enable service", 60)
        assert not runner.exited(), runner.log_tail("franka_bridge")
        assert enable_reply() == (f"cannot enable: nothing subscribes to {TARGET_TOPIC}: is the controller loaded "
                                  f"and active?")
        node.create_subscription(PoseStamped, TARGET_TOPIC, lambda msg: None, topics.COMMAND)   # the controller
        second = node.create_publisher(PoseStamped, TARGET_TOPIC, topics.COMMAND)
        wait_until(lambda: node.count_publishers(TARGET_TOPIC) == 2 and node.count_subscribers(TARGET_TOPIC) == 1,
                   "the controller and the second publisher in the graph", 30)
        wait_until(lambda: "1 other publisher(s)" in enable_reply(), "the bridge to see the second publisher", 30)
        assert enable_reply() == (f"cannot enable: 1 other publisher(s) on {TARGET_TOPIC}: the controller must take "
                                  f"targets from this node alone (crisp_controllers ignores all of them then)")
        node.destroy_publisher(second)
        # The link is fine now: what stops the enable is the missing robot state (no simulator here).
        wait_until(lambda: enable_reply() == "no robot state received yet", "the link check to pass", 30)
    finally:
        spinner.stop()
        node.destroy_node()
        context.try_shutdown()
        runner.stop()
