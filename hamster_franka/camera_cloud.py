"""camera_cloud: an RGB-D camera driver's images + a calibration file -> the runtime's base-frame point cloud
(/camera/points) and camera pose (/camera/pose, latched). robot:=franka only; the simulator makes both itself.

Subscribes to the (remappable) RealSense-style topics /camera/depth/image_raw (aligned to colour: 16UC1 mm or
32FC1 m), /camera/color/image_raw and /camera/color/camera_info. Each depth frame becomes one PointCloud2 in
the calibration's base frame, coloured by the colour frame of the nearest stamp within `max_color_offset_sec`
(hamster_core.stamp_pairing: a depth frame that arrives before its colour frame waits for it, at most
`color_wait_frames` depth frames). Frames whose sizes disagree with camera_info or the calibration are refused,
with the reason logged and on /diagnostics (ERROR); a cloud without a colour frame close enough is published
uncoloured, with a WARN there, and counted by reason (`uncoloured` in the diagnostics' values). The core is
hamster_core.calibration.
"""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from hamster_core.calibration import CalibrationError, CloudProjector, depth_in_metres, load_calibration, stream_problems
from hamster_core.stamp_pairing import StampPairer
from hamster_ros import interfaces as topics
from hamster_ros.conversions import (ConversionError, image_to_numpy, image_to_rgb, numpy_to_pointcloud2, pose_to_msg,
                                     stamp_to_ns)
from hamster_ros.node_main import RuntimeNode, declare, run_node


class CameraCloud(RuntimeNode):
    def __init__(self, **node_options):
        super().__init__("camera_cloud", **node_options)
        path = declare(self, "calibration_file", "", "Camera-to-base calibration YAML (hamster_core.calibration).")
        if not path:
            raise ValueError("calibration_file is not set: write one with `python -m hamster_core.calibration write "
                             "...` (README: Real robot, Calibration) and pass calibration:=FILE")
        try:
            self.calibration = load_calibration(path)
        except CalibrationError as error:
            raise ValueError(str(error)) from None
        self.stride = declare(self, "stride", 2, "Use every n-th depth pixel in each direction.")
        self.depth_scale = declare(self, "depth_scale", 0.001, "Metres per unit of a 16UC1 depth image.")
        self.max_color_offset = declare(self, "max_color_offset_sec", 0.05,
                                        "Colour a cloud only with a colour frame this close to the depth stamp.")
        wait = declare(self, "color_wait_frames", 2,
                       "Depth frames held back for a colour frame with a nearer stamp that may still arrive.")
        if not 0 <= wait <= 10:
            raise ValueError(f"color_wait_frames must be in [0, 10], got {wait}")
        self.pairer = StampPairer(int(round(self.max_color_offset * 1e9)), max_wait=wait)
        if not 1 <= self.stride <= 16:
            raise ValueError(f"stride must be in [1, 16], got {self.stride}")
        if not self.depth_scale > 0:
            raise ValueError(f"depth_scale must be positive, got {self.depth_scale}")
        self._info = None
        self._color = None
        self._projector = None
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(CameraInfo, topics.COLOR_INFO, self._on_info, topics.SENSOR, callback_group=group)
        self.create_subscription(Image, topics.COLOR_IMAGE, self._on_color, topics.SENSOR, callback_group=group)
        self.create_subscription(Image, topics.DEPTH_IMAGE, self._on_depth, topics.SENSOR, callback_group=group)
        self.points_pub = self.create_publisher(PointCloud2, topics.POINTS, topics.SENSOR)
        self.pose_pub = self.create_publisher(PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        self._pose_published = False
        self._problem = None
        self.get_logger().info(f"calibration {path}: camera at {np.round(self.calibration.pose.position, 3).tolist()} "
                               f"in {self.calibration.base_frame}")

    def _on_info(self, msg: CameraInfo):
        self._info = msg

    def _on_color(self, msg: Image):
        self._color = msg
        for pairing in self.pairer.add_color(stamp_to_ns(msg.header.stamp), msg):
            self._publish(pairing.depth, pairing.color)

    def _report(self, problem: str | None, level: bytes = DiagnosticStatus.ERROR):
        """Log and publish on /diagnostics when the state changes (not on every frame)."""
        if problem != self._problem:
            self._problem = problem
            if problem and level == DiagnosticStatus.ERROR:
                self.get_logger().error(f"not publishing points: {problem}")
            elif problem:
                self.get_logger().warning(problem)
            status = DiagnosticStatus(level=level if problem else DiagnosticStatus.OK,
                                      name=self.get_name(), hardware_id="camera", message=problem or "ok",
                                      values=[KeyValue(key=f"uncoloured: {reason}", value=str(count))
                                              for reason, count in sorted(self.pairer.unpaired.items())])
            array = DiagnosticArray(status=[status])
            array.header.stamp = self.get_clock().now().to_msg()
            self.diagnostics_pub.publish(array)

    def _on_depth(self, msg: Image):
        for pairing in self.pairer.add_depth(stamp_to_ns(msg.header.stamp), msg):
            self._publish(pairing.depth, pairing.color)

    def _publish(self, msg: Image, paired: Image | None):
        """One cloud from a depth frame, coloured by its paired colour frame (None: uncoloured)."""
        info, color_msg = self._info, self._color
        if info is None:
            return self._report(f"no camera_info on {topics.COLOR_INFO} yet")
        color_size = (color_msg.width, color_msg.height) if color_msg is not None else None
        problems = stream_problems((info.width, info.height), info.k, (msg.width, msg.height), color_size,
                                   self.calibration)
        if problems:
            return self._report("; ".join(problems))
        k = np.asarray(info.k, dtype=float).reshape(3, 3)
        key = (info.width, info.height, k[0, 0], k[1, 1], k[0, 2], k[1, 2], self.stride)
        if self._projector is None or self._projector.key != key:
            self._projector = CloudProjector(info.width, info.height, k[0, 0], k[1, 1], k[0, 2], k[1, 2],
                                             self.calibration.base_from_camera, self.stride)
        try:
            depth = depth_in_metres(image_to_numpy(msg), msg.encoding, self.depth_scale)
            colors = image_to_rgb(paired) if paired is not None else None
            points, point_colors = self._projector.points(depth, colors)
        except (CalibrationError, ConversionError, ValueError) as error:
            return self._report(str(error))
        if colors is None:
            self._report(f"publishing clouds without colour: no colour frame within max_color_offset_sec "
                         f"({self.max_color_offset:g} s) of the depth stamp", DiagnosticStatus.WARN)
        else:
            self._report(None)
        header = Header(frame_id=self.calibration.base_frame, stamp=msg.header.stamp)
        self.points_pub.publish(numpy_to_pointcloud2(points, point_colors, header))
        if not self._pose_published:  # latched: once, stamped like the first cloud
            self.pose_pub.publish(pose_to_msg(self.calibration.pose, header))
            self._pose_published = True


def main():
    run_node(CameraCloud, threads=1)


if __name__ == "__main__":
    main()
