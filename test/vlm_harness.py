"""The VLM node's test harness: camera images in (a grey 80x60 image at 10 Hz), VLM status and paths out, the
RunEpisode action and the replan service, on its own rclpy context (optionally in another ROS domain)."""
import json

import numpy as np

from waiting import call_service, wait_until


class Harness:
    """Camera images in, VLM status and paths out, the RunEpisode action and the replan service."""

    def __init__(self, domain_id: int | None = None):
        import rclpy
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from hamster_msgs.action import RunEpisode
        from hamster_msgs.msg import Path2D
        from hamster_ros import interfaces as t
        from hamster_ros.conversions import numpy_to_image
        from hamster_ros.spinner import BackgroundSpinner

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("vlm_node_test", context=self.context)
        self.statuses, self.paths = [], []
        self.node.create_subscription(String, t.VLM_STATUS, lambda m: self.statuses.append(json.loads(m.data)),
                                      t.LATCHED)
        self.node.create_subscription(Path2D, t.PATH, self.paths.append, t.LATCHED)
        image_pub = self.node.create_publisher(Image, t.COLOR_IMAGE, t.SENSOR)
        pixels = np.full((60, 80, 3), 120, np.uint8)

        def publish_image():
            msg = numpy_to_image(pixels, "rgb8")
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = "camera"
            image_pub.publish(msg)
        self.node.create_timer(0.1, publish_image)
        self.episode = ActionClient(self.node, RunEpisode, t.RUN_EPISODE)
        self.replan = self.node.create_client(Trigger, t.REPLAN)
        self.stop = self.node.create_client(Trigger, t.STOP)
        self.RunEpisode, self.Trigger = RunEpisode, Trigger
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def result(self, future, what):
        wait_until(future.done, what)
        return future.result()

    def start_episode(self, instruction: str, timeout: float):
        """The policy node's answer to the goal; one it never answers is stopped and sent again
        (hamster_apps.episode_client.send_episode_goal: a just-started server's answer can be lost)."""
        from hamster_apps.episode_client import send_episode_goal

        def stop_unanswered():
            print(f"the policy node did not answer the episode goal {instruction!r}: stopping, sending it again")
            call_service(self.stop, self.Trigger.Request())
        return send_episode_goal(self.episode, self.RunEpisode.Goal(instruction=instruction, timeout_sec=timeout),
                                 stop_unanswered)

    def close(self):
        assert self.spinner.stop(), "the spin thread did not stop"
        self.node.destroy_node()
        self.context.try_shutdown()
