"""perception_node: on every camera frame, masks for the instruction's target object and placement area.

Always works on the newest frame: frames arriving while one is processed replace each other, so a slow
backend lowers the output rate instead of building a queue.
"""
from __future__ import annotations

import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from hamster_core.drawing import draw_masks
from hamster_core.instruction import parse_pick_place_instruction
from hamster_msgs.msg import GroundingMasks
from hamster_ros import interfaces as topics
from hamster_ros.conversions import (ConversionError, image_to_numpy, image_to_rgb, masks_to_msg, numpy_to_image,
                                     stamp_to_seconds)
from hamster_ros.latest import LatestMessages
from hamster_ros.node_main import declare, run_node
from perception_node.backends import PERCEPTION_BACKENDS, PerceptionFrame

TARGET_LABEL = "target_object"
PLACEMENT_LABEL = "placement_area"


class PerceptionNode(Node):
    def __init__(self):
        super().__init__("perception_node")
        backend_name = declare(self, "backend", "sim_ground_truth", "Perception backend, by registered name.")
        self.backend = PERCEPTION_BACKENDS.create(backend_name)
        self.publish_overlay = declare(self, "publish_overlay", True, "Publish the masks drawn on the image.")
        self._processed_stamp = None

        inputs = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, inputs)
        self.latest.subscribe("image", Image, topics.COLOR_IMAGE, topics.SENSOR)
        self.latest.subscribe("segmentation", Image, topics.SEGMENTATION, topics.SENSOR)
        self.latest.subscribe("scene", String, topics.SIM_SCENE, topics.LATCHED)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, topics.LATCHED,
                                 callback_group=inputs)
        self.masks_pub = self.create_publisher(GroundingMasks, topics.MASKS, topics.SENSOR)
        self.overlay_pub = self.create_publisher(Image, topics.MASKS_IMAGE, topics.SENSOR)
        rate = declare(self, "max_rate_hz", 30.0, "Upper bound on processed frames per second.")
        self.create_timer(1.0 / rate, self._process_newest, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"backend={backend_name}")

    def _on_instruction(self, msg):
        try:
            target, placement = parse_pick_place_instruction(msg.data)
        except ValueError as error:
            self.get_logger().error(f"cannot ground the instruction: {error}")
            self.backend.set_queries({})
            return
        self.backend.set_queries({TARGET_LABEL: target, PLACEMENT_LABEL: placement})
        self.get_logger().info(f"queries: {TARGET_LABEL}={target!r} {PLACEMENT_LABEL}={placement!r}")

    def _process_newest(self):
        image, segmentation, scene = self.latest.get("image", "segmentation", "scene")
        if image is None or image.header.stamp == self._processed_stamp or not self.backend.queries:
            return
        synced = segmentation is not None and segmentation.header.stamp == image.header.stamp
        if self.backend.uses_segmentation and not synced:
            return  # its segmentation is still on the way
        self._processed_stamp = image.header.stamp
        started = time.monotonic()
        try:
            rgb = image_to_rgb(image)
            labels = image_to_numpy(segmentation) if synced else None
            detections = self.backend.process(PerceptionFrame(
                stamp=stamp_to_seconds(image.header.stamp), rgb=rgb,
                segmentation=labels, scene_json=scene.data if scene else None))
        except (ConversionError, ValueError) as error:
            self.get_logger().error(f"frame skipped: {error}", throttle_duration_sec=2.0)
            return
        except Exception as error:  # a backend bug must not end the node: report and take the next frame
            self.get_logger().error(f"frame skipped: unexpected {type(error).__name__}: {error}",
                                    throttle_duration_sec=2.0)
            return
        self.masks_pub.publish(masks_to_msg(image.header, [d.label for d in detections],
                                            [d.phrase for d in detections], [d.mask for d in detections],
                                            [d.score for d in detections], [d.box for d in detections]))
        if self.publish_overlay:
            overlay = draw_masks(rgb, {d.label: d.mask for d in detections})
            self.overlay_pub.publish(numpy_to_image(overlay, "rgb8", image.header))
        self.get_logger().debug(f"{len(detections)} masks in {1000 * (time.monotonic() - started):.1f} ms")


def main():
    run_node(PerceptionNode)


if __name__ == "__main__":
    main()
