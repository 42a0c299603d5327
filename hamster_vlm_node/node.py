"""hamster_vlm_node: the slow half. Once per instruction, asks the VLM backend for a 2D path on the newest
camera image, parses the answer strictly, and publishes it latched as Path2D plus a HAMSTER-style drawing.

A failed query or an answer that does not parse publishes nothing (the policy keeps holding) and is
reported in the log and on /diagnostics.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from hamster_core.drawing import draw_path
from hamster_core.path2d import PathParseError, parse_hamster_answer
from hamster_msgs.msg import Path2D
from hamster_ros import interfaces as topics
from hamster_ros.conversions import (ConversionError, camera_from_msg, image_to_rgb, numpy_to_image,
                                     path_to_msg, pose_from_msg, stamp_to_seconds)
from hamster_ros.latest import LatestMessages
from hamster_ros.node_main import declare, run_node
from hamster_vlm_node.backends import VLM_BACKENDS, VlmError, VlmRequest


class VlmNode(Node):
    def __init__(self):
        super().__init__("hamster_vlm_node")
        backend_name = declare(self, "backend", "oracle", "VLM backend, by registered name.")
        config = {}
        if backend_name == "oracle":
            config["rdp_epsilon"] = declare(self, "oracle.rdp_epsilon", 0.05,
                                            "RDP epsilon (normalized image units) for the oracle's path.")
        self.backend = VLM_BACKENDS.create(backend_name, **config)
        self.max_points = declare(self, "max_points", 64, "Answers with more points than this are rejected.")
        self.input_timeout = declare(self, "input_timeout_sec", 10.0,
                                     "Give up on an instruction when no fresh image arrives in this time.")

        self._lock = threading.Lock()
        self._pending: tuple[str, float] | None = None   # (instruction, node time it arrived)
        self._wake = threading.Event()

        group = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, group)
        self.latest.subscribe("image", Image, topics.COLOR_IMAGE, topics.SENSOR)
        self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.latest.subscribe("ee_pose", PoseStamped, topics.EE_POSE, topics.SENSOR)
        self.latest.subscribe("scene", String, topics.SIM_SCENE, topics.LATCHED)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, topics.LATCHED,
                                 callback_group=group)
        self.path_pub = self.create_publisher(Path2D, topics.PATH, topics.LATCHED)
        self.image_pub = self.create_publisher(Image, topics.PATH_IMAGE, topics.LATCHED)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        # Model calls can take seconds: they run on their own thread, never in a callback.
        self._worker = threading.Thread(target=self._serve, daemon=True)
        self._running = True
        self._worker.start()
        self.get_logger().info(f"backend={backend_name} model={self.backend.model_id}")

    def _on_instruction(self, msg):
        with self._lock:
            self._pending = (msg.data.strip(), self._now())
        self._wake.set()

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def close(self):
        self._running = False
        self._wake.set()

    def _serve(self):
        while self._running:
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, None
            if pending and pending[0]:
                try:
                    self._answer(*pending)
                except Exception as error:  # a backend bug must not end the worker: report and go on
                    self._report(DiagnosticStatus.ERROR, f"no path for {pending[0]!r}: unexpected "
                                 f"{type(error).__name__}: {error}", pending[0])

    def _fresh_image(self, since: float, deadline: float) -> Image | None:
        """The first camera image stamped after `since`: a path must describe the scene as it is now."""
        while self._running and time.monotonic() < deadline:
            image = self.latest.get("image")
            with self._lock:
                newer_instruction = self._pending is not None
            if newer_instruction:
                return None
            if image is not None and stamp_to_seconds(image.header.stamp) >= since:
                return image
            time.sleep(0.02)
        return None

    def _answer(self, instruction: str, received: float):
        started = time.monotonic()
        image_msg = self._fresh_image(received, started + self.input_timeout)
        if image_msg is None:
            self._report(DiagnosticStatus.ERROR, f"no fresh camera image for {instruction!r}", instruction)
            return
        info, camera_pose, ee_pose, scene = self.latest.get("camera_info", "camera_pose", "ee_pose", "scene")
        try:
            image = image_to_rgb(image_msg)
            camera = camera_from_msg(info, pose_from_msg(camera_pose).matrix()) if info and camera_pose else None
            request = VlmRequest(image=image, instruction=instruction, camera=camera,
                                 tcp_pose=pose_from_msg(ee_pose) if ee_pose else None,
                                 scene_json=scene.data if scene else None)
            query_started = time.monotonic()
            answer = self.backend.query(request)
            query_sec = time.monotonic() - query_started
            path = parse_hamster_answer(answer, max_points=self.max_points,
                                        image_size=(image_msg.width, image_msg.height))
        except (VlmError, PathParseError, ConversionError, ValueError) as error:
            self._report(DiagnosticStatus.ERROR, f"no path for {instruction!r}: {error}", instruction)
            return
        msg = path_to_msg(path, image_msg.header, image_msg.width, image_msg.height, instruction,
                          self.backend.model_id, answer)
        self.path_pub.publish(msg)
        self.image_pub.publish(numpy_to_image(draw_path(image, path), "rgb8", image_msg.header))
        total_sec = time.monotonic() - started
        self._report(DiagnosticStatus.OK, f"path with {len(path)} points", instruction,
                     query_sec=f"{query_sec:.3f}", total_sec=f"{total_sec:.3f}")
        self.get_logger().info(f"path for {instruction!r}: {answer} (model {query_sec * 1000:.0f} ms)")

    def _report(self, level, message: str, instruction: str, **values):
        if level != DiagnosticStatus.OK:
            self.get_logger().error(message)
        status = DiagnosticStatus(level=level, name="hamster_vlm_node", message=message,
                                  hardware_id=self.backend.model_id,
                                  values=[KeyValue(key="instruction", value=instruction)]
                                  + [KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main():
    run_node(VlmNode)


if __name__ == "__main__":
    main()
