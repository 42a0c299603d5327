"""perception_node: on every camera frame, masks for the instruction's target object and placement area.

Always works on the newest frame: frames arriving while one is processed replace each other, so a slow
backend lowers the output rate instead of building a queue.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hamster_core.calibration import depth_in_metres
from hamster_core.input_drops import InputDrops
from hamster_core.instruction import PLACEMENT_LABEL, TARGET_LABEL, parse_pick_place_instruction
from hamster_msgs.msg import GroundingMasks
from hamster_ros import interfaces as topics
from hamster_ros.conversions import (ConversionError, camera_from_msg, image_to_numpy, image_to_rgb, masks_to_msg,
                                     numpy_to_image, numpy_to_pointcloud2, pose_from_msg, stamp_to_seconds)
from hamster_ros.latest import LatestMessages
from hamster_ros.node_main import RuntimeNode, declare, run_node
from hamster_core.perception.backend import PERCEPTION_BACKENDS, PerceptionFrame
from hamster_core.perception.pipeline import annotate, masked_points

REDETECT_SERVICE = "/hamster/redetect"
OBJECT_POINTS_PREFIX = "/hamster/object_points/"   # + label: PointCloud2 of the object's masked pixels (base frame)


def parse_extra_queries(entries: list[str]) -> dict[str, str]:
    """['label=phrase', ...] -> {label: phrase}; ValueError naming a malformed entry."""
    queries = {}
    for entry in entries:
        label, sep, phrase = entry.partition("=")
        if not sep or not label.strip() or not phrase.strip():
            raise ValueError(f"extra_queries entries must be 'label=phrase', got {entry!r}")
        queries[label.strip()] = phrase.strip()
    return queries


def depth_metres(msg: Image):
    """A depth image (32FC1 metres, 16UC1/mono16 millimetres) as float32 metres, NaN where nothing was measured."""
    return depth_in_metres(image_to_numpy(msg), msg.encoding)


def declare_pipeline(node: Node) -> dict:
    """The `pipeline.*` parameters as build_pipeline keywords."""
    p = "pipeline."
    return dict(
        detector=declare(node, p + "detector", "grounding_dino",
                         "Detector: grounding_dino, owlv2, sam3 or sim_ground_truth (simulator only)."),
        detector_checkpoint=declare(node, p + "detector_checkpoint", "",
                                    "Detector checkpoint: a folder written by save_pretrained, or a hub id."),
        segmenter=declare(node, p + "segmenter", "sam", "Segmenter: sam, sam2, segment_anything or box."),
        segmenter_checkpoint=declare(node, p + "segmenter_checkpoint", "",
                                     "Segmenter checkpoint (folder/hub id; a .pth file for segment_anything)."),
        tracker=declare(node, p + "tracker", "template", "Tracker between detections: template, csrt, kcf, mil, "
                        "sam2_video (needs tracker_checkpoint) or none (detect every frame)."),
        tracker_checkpoint=declare(node, p + "tracker_checkpoint", "",
                                   "sam2_video tracker: a Sam2VideoModel checkpoint folder or hub id."),
        device=declare(node, p + "device", "cpu", "torch device of the models, e.g. cpu or cuda:0."),
        box_threshold=declare(node, p + "box_threshold", 0.35, "Minimum detector box score in [0, 1]."),
        text_threshold=declare(node, p + "text_threshold", 0.25,
                               "Grounding DINO: minimum score of the phrase a box is assigned to."),
        min_track_confidence=declare(node, p + "min_track_confidence", 0.3,
                                     "Tracks whose appearance agreement falls below this count as lost."),
        redetect_every_n=declare(node, p + "redetect_every_n", 30, "Detect again every n frames (0: never)."),
        segment_every_k=declare(node, p + "segment_every_k", 1,
                                "Run the segmenter every k frames; masks follow their boxes in between."),
        redetect_on_loss=declare(node, p + "redetect_on_loss", True,
                                 "Detect while an object is lost or was never found (at a bounded rate)."),
        lost_redetect_every_n=declare(node, p + "lost_redetect_every_n", 10,
                                      "While an object is lost, detect at most every n frames."),
        occluded_frames=declare(node, p + "occluded_frames", 15,
                                "An object not re-acquired for this many frames goes from occluded to lost."),
        min_appearance=declare(node, p + "min_appearance", 0.6,
                               "Colour-histogram agreement with the object's model a tracked box needs, in [0, 1]."),
    )


class PerceptionNode(RuntimeNode):
    def __init__(self):
        super().__init__("perception_node")
        backend_name = declare(self, "backend", "sim_ground_truth", "Perception backend, by registered name.")
        pipeline_config = declare_pipeline(self)
        # A string-array default cannot be empty (ROS infers the type from it), so "" entries mean nothing.
        extra = declare(self, "extra_queries", [""], "More things to segment besides the instruction's target "
                        "and placement, as 'label=phrase' entries.")
        self.extra_queries = parse_extra_queries([entry for entry in extra if entry.strip()])
        self.publish_overlay = declare(self, "publish_overlay", True, "Publish the masks drawn on the image.")
        self.publish_clouds = declare(self, "publish_object_clouds", False,
                                      f"Publish each object's masked depth points on {OBJECT_POINTS_PREFIX}<label>.")
        self.cloud_stride = declare(self, "object_cloud_stride", 2, "Every n-th masked pixel in each direction.")
        if not isinstance(self.cloud_stride, int) or self.cloud_stride < 1:
            raise ValueError(f"object_cloud_stride must be a positive integer, got {self.cloud_stride!r}")
        self.backend = PERCEPTION_BACKENDS.create(backend_name, **(pipeline_config if backend_name == "pipeline"
                                                                   else {}))
        self._processed_stamp = None
        self._awaiting_stamp = None   # an image whose segmentation has not arrived yet
        self._cloud_pubs = {}
        self.drops = InputDrops()      # frames and instructions received and not used, by reason

        inputs = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, inputs)
        self.latest.subscribe("image", Image, topics.COLOR_IMAGE, topics.SENSOR)
        self.latest.subscribe("segmentation", Image, topics.SEGMENTATION, topics.SENSOR)
        self.latest.subscribe("scene", String, topics.SIM_SCENE, topics.LATCHED)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, topics.LATCHED,
                                 callback_group=inputs)
        self.masks_pub = self.create_publisher(GroundingMasks, topics.MASKS, topics.SENSOR)
        self.overlay_pub = self.create_publisher(Image, topics.MASKS_IMAGE, topics.SENSOR)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        self.create_service(Trigger, REDETECT_SERVICE, self._on_redetect, callback_group=inputs)
        self.track_with_depth = declare(self, "track_with_depth", True, "Check tracks against the aligned depth "
                                        "image (pipeline backend only).") and backend_name == "pipeline"
        if self.publish_clouds or self.track_with_depth:
            self.latest.subscribe("depth", Image, topics.DEPTH_IMAGE, topics.SENSOR)
        if self.publish_clouds:
            self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
            self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        rate = declare(self, "max_rate_hz", 30.0, "Upper bound on processed frames per second.")
        self.create_timer(1.0 / rate, self._process_newest, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"backend={backend_name}")

    def _on_instruction(self, msg):
        self.drops.new_episode()
        try:
            target, placement = parse_pick_place_instruction(msg.data)
        except ValueError as error:
            self._drop("instruction", "not a pick-and-place instruction", str(error))
            self.backend.set_queries({})
            return
        self.backend.set_queries({TARGET_LABEL: target, PLACEMENT_LABEL: placement, **self.extra_queries})
        self.get_logger().info(f"queries: {TARGET_LABEL}={target!r} {PLACEMENT_LABEL}={placement!r} "
                               f"extra={self.extra_queries}")

    def _on_redetect(self, request, response):
        response.success = self.backend.request_redetect()
        response.message = "detecting on the next frame" if response.success else \
            "this backend finds every object on every frame anyway"
        return response

    def _process_newest(self):
        image, segmentation, scene = self.latest.get("image", "segmentation", "scene")
        if image is None or image.header.stamp == self._processed_stamp or not self.backend.queries:
            return
        synced = segmentation is not None and segmentation.header.stamp == image.header.stamp
        awaited, self._awaiting_stamp = self._awaiting_stamp, None
        if awaited is not None and awaited != image.header.stamp:
            self._drop("image", "superseded before its segmentation arrived")
        if self.backend.uses_segmentation and not synced:
            self._awaiting_stamp = image.header.stamp   # its segmentation is still on the way
            return
        self._processed_stamp = image.header.stamp
        started = time.monotonic()
        try:
            rgb = image_to_rgb(image)
            labels = image_to_numpy(segmentation) if synced else None
            depth_m = self._depth_for(image)
            detections = self.backend.process(PerceptionFrame(
                stamp=stamp_to_seconds(image.header.stamp), rgb=rgb, segmentation=labels,
                scene_json=scene.data if scene else None, depth=depth_m))
        except (ConversionError, ValueError) as error:
            self._drop("image", "invalid", str(error))
            return
        except Exception as error:  # a backend bug must not end the node: report and take the next frame
            self._drop("image", "backend failed", f"unexpected {type(error).__name__}: {error}")
            return
        states = self._states(detections)
        msg = masks_to_msg(image.header, [d.label for d in detections], [d.phrase for d in detections],
                           [d.mask for d in detections], [d.score for d in detections], [d.box for d in detections])
        msg.states = [states[d.label] for d in detections]
        msg.hidden_labels = [label for label in states if label not in {d.label for d in detections}]
        msg.hidden_states = [states[label] for label in msg.hidden_labels]
        self.masks_pub.publish(msg)
        if self.publish_overlay:
            self.overlay_pub.publish(numpy_to_image(annotate(rgb, detections, states), "rgb8", image.header))
        if self.publish_clouds:
            self._publish_clouds(image, detections, depth_m)
        elapsed_ms = 1000 * (time.monotonic() - started)
        self._publish_diagnostics(image.header.stamp, detections, elapsed_ms)
        self.get_logger().debug(f"{len(detections)} masks in {elapsed_ms:.1f} ms")

    def _states(self, detections) -> dict[str, str]:
        """Every query's track state; a backend without states: found objects `detected`, the others `lost`."""
        states = self.backend.track_states()
        found = {d.label for d in detections}
        return {label: states.get(label, "detected" if label in found else "lost") for label in self.backend.queries}

    def _depth_for(self, image):
        """The aligned depth image of this very frame in metres, or None (the depth check then abstains; a depth
        image of another size is counted as dropped, the colour frame is still processed)."""
        depth = self.latest.get("depth") if self.track_with_depth else None
        if depth is None or depth.header.stamp != image.header.stamp:
            return None
        if (depth.height, depth.width) != (image.height, image.width):
            self._drop("depth", "not aligned with the colour image",
                       f"depth {depth.width}x{depth.height}, colour {image.width}x{image.height}: no depth check")
            return None
        try:
            return depth_metres(depth)
        except (ConversionError, ValueError) as error:
            self._drop("depth", "invalid", f"no depth check: {error}")
            return None

    def _drop(self, source: str, reason: str, detail: str = "") -> None:
        """Counts an input not used; logs each reason once per instruction and says it on /diagnostics."""
        line = self.drops.record(source, reason, detail)
        if line:
            self.get_logger().warning(line)
        status = DiagnosticStatus(level=DiagnosticStatus.WARN, name=self.get_name(), hardware_id="perception",
                                  message=f"dropped {source} {reason}",
                                  values=[KeyValue(key=k, value=v) for k, v in self.drops.diagnostic_values()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def _publish_diagnostics(self, stamp, detections, elapsed_ms: float):
        values = {"frame_ms": f"{elapsed_ms:.2f}", "objects": str(len(detections)),
                  "labels": ",".join(d.label for d in detections), **self.backend.diagnostics(),
                  **dict(self.drops.diagnostic_values())}
        missing = sorted(set(self.backend.queries) - {d.label for d in detections})
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if missing else DiagnosticStatus.OK,
                                  name=self.get_name(), hardware_id="perception",
                                  message=f"not found: {', '.join(missing)}" if missing else "all queries found",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = stamp
        self.diagnostics_pub.publish(array)

    def _publish_clouds(self, image, detections, depth_m=None):
        """`depth_m`: this frame's depth in metres when the tracking already converted it."""
        depth, info, pose = self.latest.get("depth", "camera_info", "camera_pose")
        if depth is None or info is None or pose is None or depth.header.stamp != image.header.stamp:
            return  # no depth for this very frame: a cloud from another frame would not match the mask
        try:
            camera = camera_from_msg(info, pose_from_msg(pose).matrix())
            if depth_m is None:
                depth_m = depth_metres(depth)
            for detection in detections:
                points = masked_points(detection.mask, depth_m, camera, self.cloud_stride)
                publisher = self._cloud_pubs.get(detection.label)
                if publisher is None:
                    publisher = self._cloud_pubs[detection.label] = self.create_publisher(
                        PointCloud2, OBJECT_POINTS_PREFIX + detection.label, topics.SENSOR)
                header = pose.header.__class__(stamp=image.header.stamp, frame_id=pose.header.frame_id)
                publisher.publish(numpy_to_pointcloud2(points.astype("float32"), None, header))
        except (ConversionError, ValueError) as error:
            self._drop("depth", "invalid", f"no object clouds: {error}")


def main():
    run_node(PerceptionNode)


if __name__ == "__main__":
    main()
