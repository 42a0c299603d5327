"""hamster_vlm_node: the slow half. Once per instruction, asks the VLM backend for a 2D path on the first camera
image newer than the instruction, parses the answer strictly, and publishes it latched as Path2D plus a
HAMSTER-style drawing. The work itself is `hamster_vlm_node.planner` (shared with `hamster-plan`).

Episode semantics
- A new instruction (or a /hamster/replan request for the current one) starts a query on the first fresh frame.
- Up to `max_attempts` query+parse attempts; nothing invalid is ever published on /hamster/path.
- Every step is reported, latched, on /hamster/vlm_status (JSON: instruction, state planning|ok|failed, message,
  model_id, attempt, timing, received = node time of the request, dropped = inputs not used by reason) and on
  /diagnostics. After the last failed attempt the state is `failed` with the reason; policy_node then aborts the
  episode with that message.
- An attempt waits for the inputs the backend needs (VlmBackend.required_inputs) before it is spent.
- Instructions bind to the episode (episode_binding.py): while a RunEpisode goal runs (its action status topic), the
  node plans for that goal's instruction only; another instruction is logged, counted in `dropped` (instruction:
  mid-episode) and ignored until the next goal.
"""
from __future__ import annotations

import json
import threading
import time

from action_msgs.msg import GoalStatus, GoalStatusArray
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.qos import qos_profile_action_status_default
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hamster_core.drawing import draw_masks, draw_path
from hamster_core.input_drops import InputDrops
from hamster_core.instruction import TARGET_LABEL
from hamster_msgs.msg import GroundingMasks, Path2D
from hamster_ros import interfaces as topics
from hamster_ros.conversions import (ConversionError, camera_from_msg, image_to_rgb, numpy_to_image,
                                     masks_from_msg, masks_to_msg, path_to_msg, pose_from_msg, stamp_to_seconds)
from hamster_ros.latest import LatestMessages
from hamster_ros.node_main import RuntimeNode, declare, run_node
from hamster_core.vlm import VlmRequest, excerpt
from hamster_vlm_node.episode_binding import EpisodeBinding
from hamster_vlm_node.grounding import GROUNDING_PARAMETERS, Grounder, GroundingError
from hamster_vlm_node.target_motion import TargetMotion
from hamster_vlm_node.planner import (PLANNER_PARAMETERS, PlanError, backend_parameters, create_backend,
                                      planner_from_config)


MODES = ("path", "masks", "both")
INPUT_TOPICS = {"camera": f"camera model ({topics.COLOR_INFO} and {topics.CAMERA_POSE})",
                "tcp_pose": f"end-effector pose ({topics.EE_POSE})", "scene_json": f"scene ({topics.SIM_SCENE})"}


class VlmNode(RuntimeNode):
    def __init__(self):
        super().__init__("hamster_vlm_node")
        backend_name = declare(self, "backend", "oracle", "VLM backend, by registered name.")
        config = {"backend": backend_name}
        for name, (default, description) in PLANNER_PARAMETERS.items():
            config[name] = declare(self, name, default, description)
        # Only the selected backend's options are declared: a parameter file may carry all backends' sections.
        for parameter in backend_parameters(backend_name):
            key = f"{backend_name}.{parameter.name}"
            config[key] = declare(self, key, parameter.default, parameter.description)
        self.mode = declare(self, "mode", "path", "What to produce per instruction: path (HAMSTER), masks "
                            "(RoboGround grounding masks) or both.")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.planner = planner_from_config(config) if self.mode != "masks" else None
        self.grounder = None
        if self.mode != "path":
            grounding = {name: declare(self, f"grounding.{name}", default, description)
                         for name, (default, description) in GROUNDING_PARAMETERS.items()}
            # The phrases may be asked of the VLM: the planner's, or in mode masks the backend alone (not loaded at
            # all when the phrases come from the rules).
            if self.planner is not None:
                backend = self.planner.backend
            else:
                backend = None if grounding["phrases"] == "rules" else create_backend(backend_name, config)
            self.grounder = Grounder(backend, **grounding)
        self.model_id = " & ".join(part.model_id for part in (self.planner, self.grounder) if part is not None)
        self.input_timeout = declare(self, "input_timeout_sec", 10.0,
                                     "Give up on an instruction when no fresh image arrives in this time.")
        self.max_attempts = declare(self, "max_attempts", 3,
                                    "Query+parse attempts per instruction before the episode fails.")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

        self._lock = threading.Lock()
        # (instruction, node time of the request, the camera image already here then)
        self._pending: tuple[str, float, Image | None] | None = None
        self._current: str | None = None                # the latest instruction, for replanning
        self._wake = threading.Event()
        self.drops = InputDrops()   # instructions, images and masks received and not used, by reason

        group = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, group)
        self.latest.subscribe("image", Image, topics.COLOR_IMAGE, topics.SENSOR)
        self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.latest.subscribe("ee_pose", PoseStamped, topics.EE_POSE, topics.SENSOR)
        self.latest.subscribe("scene", String, topics.SIM_SCENE, topics.LATCHED)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, topics.LATCHED,
                                 callback_group=group)
        self.binding = EpisodeBinding()
        self._last_status: dict | None = None
        # The running RunEpisode goals, as the policy node's action server reports them.
        self.create_subscription(GoalStatusArray, f"{topics.RUN_EPISODE}/_action/status", self._on_goal_status,
                                 qos_profile_action_status_default, callback_group=group)
        self.create_timer(0.1, self._refuse_expired, callback_group=group)
        self.create_service(Trigger, topics.REPLAN, self._on_replan, callback_group=group)
        motion = declare(self, "replan_target_motion", 0.0, "Re-plan when perception's target mask centroid moves "
                         "more than this (fraction of the image size); 0 = off.")
        self.target_motion = TargetMotion(motion) if motion > 0 else None
        if self.target_motion is not None:
            self.create_subscription(GroundingMasks, topics.MASKS, self._on_masks, topics.SENSOR,
                                     callback_group=group)
        self.path_pub = self.create_publisher(Path2D, topics.PATH, topics.LATCHED)
        self.grounding_pub = self.create_publisher(GroundingMasks, topics.GROUNDING, topics.LATCHED)
        self.grounding_image_pub = self.create_publisher(Image, topics.GROUNDING_IMAGE, topics.LATCHED)
        self.image_pub = self.create_publisher(Image, topics.PATH_IMAGE, topics.LATCHED)
        self.status_pub = self.create_publisher(String, topics.VLM_STATUS, topics.LATCHED)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        self._diagnostic: DiagnosticStatus | None = None
        self.create_timer(1.0, self._publish_diagnostic, callback_group=group)
        # Model calls can take seconds: they run on their own thread, never in a callback.
        self._worker = threading.Thread(target=self._serve, daemon=True)
        self._running = True
        self._worker.start()
        self.get_logger().info(f"backend={backend_name} model={self.model_id} max_attempts={self.max_attempts}")

    # -- requests -------------------------------------------------------------------------------------
    def _on_goal_status(self, msg):
        running = {bytes(status.goal_info.goal_id.uuid).hex(): stamp_to_seconds(status.goal_info.stamp)
                   for status in msg.status_list
                   if status.status in (GoalStatus.STATUS_ACCEPTED, GoalStatus.STATUS_EXECUTING)}
        with self._lock:
            claimed = self.binding.running_goals(running, time.monotonic())
        if claimed is not None:  # the new goal's instruction came before its status
            self._take(claimed.text, self._now())

    def _on_instruction(self, msg):
        instruction = msg.data.strip()
        with self._lock:
            taken = self.binding.admit(instruction, time.monotonic()) if instruction else True
        if taken:
            self._take(instruction, self._now())

    def _refuse_expired(self) -> None:
        """Instructions held mid-episode that no new goal claimed: counted, logged, and shown in the status."""
        with self._lock:
            refused = self.binding.expired(time.monotonic())
        for _, reason, detail in refused:
            self._drop("instruction", reason, detail)
        if refused:
            self._republish_status()  # the count shows at once, not with the next state change

    def _take(self, instruction: str, received: float):
        """Plan for `instruction` from now on (it supersedes whatever was being planned)."""
        self.drops.new_episode()
        if not instruction:
            self._drop("instruction", "empty")
        with self._lock:
            self._pending = (instruction, received, self.latest.get("image"))
            self._current = instruction or None
        if self.target_motion is not None:
            self.target_motion.reset()
        self._wake.set()

    def _on_masks(self, msg):
        """Re-plan when perception sees the target move past `replan_target_motion` (opt-in: moving the target
        is also what a grasp does, so this suits scenes changed by people before the grasp)."""
        try:
            masks = masks_from_msg(msg)
        except (ConversionError, ValueError) as error:
            self._drop("masks", "invalid", str(error))
            return
        mask = masks.get(TARGET_LABEL)
        distance = None if mask is None else self.target_motion.moved(mask)
        if distance is not None and self._request_replan():
            self.get_logger().info(f"target moved {distance:.3f} of the image: replanning")

    def _request_replan(self) -> str | None:
        with self._lock:
            instruction = self._current
            if instruction:
                self._pending = (instruction, self._now(), self.latest.get("image"))
        if instruction:
            self._wake.set()
        return instruction

    def _on_replan(self, request, response):
        instruction = self._request_replan()
        response.success = bool(instruction)
        response.message = f"replanning {instruction!r}" if instruction else "no instruction to replan yet"
        return response

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def close(self):
        self._running = False
        self._wake.set()

    def _superseded(self) -> bool:
        with self._lock:
            return self._pending is not None

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
                    self._status(pending[0], pending[1], "failed", f"no path for {pending[0]!r}: unexpected "
                                 f"{type(error).__name__}: {error}", 0)

    # -- one instruction --------------------------------------------------------------------------------
    def _fresh_image(self, since: float, held: Image | None, deadline: float) -> Image | None:
        """The first camera image stamped after `since` that arrived after the request (not `held`): a path must
        describe the scene as it is now. Both, because this node's simulated clock can lag the one of the node
        that sent the instruction (each follows /clock as it receives it): an image already here can carry a
        stamp past this node's `since` and still predate the episode (the policy node then drops the path)."""
        while self._running and time.monotonic() < deadline:
            image = self.latest.get("image")
            if self._superseded():
                return None
            if image is not None and image is not held and stamp_to_seconds(image.header.stamp) >= since:
                return image
            time.sleep(0.02)
        return None

    def _missing_inputs(self) -> list[str]:
        """The backend's required request fields (VlmBackend.required_inputs) that no message provides yet."""
        needed = self.planner.backend.required_inputs if self.planner is not None else frozenset()
        info, camera_pose, ee_pose, scene = self.latest.get("camera_info", "camera_pose", "ee_pose", "scene")
        available = {"camera": info is not None and camera_pose is not None, "tcp_pose": ee_pose is not None,
                     "scene_json": scene is not None}
        return [INPUT_TOPICS[name] for name in sorted(needed) if not available[name]]

    def _wait_for_inputs(self, deadline: float) -> list[str]:
        """Waits until the backend's inputs have arrived (an attempt without them would fail for certain and count
        against max_attempts); returns what is still missing at the deadline."""
        while (missing := self._missing_inputs()) and self._running and not self._superseded() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        return missing

    def _answer(self, instruction: str, received: float, held_image: Image | None):
        started = time.monotonic()
        missing = self._wait_for_inputs(started + self.input_timeout)
        if self._superseded():
            return
        if missing:
            self._status(instruction, received, "failed", f"no path for {instruction!r}: no {' or '.join(missing)} "
                         f"within {self.input_timeout:g} s (the {self.planner.backend.model_id} backend needs them)",
                         0)
            return
        error_message = ""
        since = received
        grounded = grounded_header = None  # masks found in an earlier attempt are kept
        grounding_error = ""
        for attempt in range(1, self.max_attempts + 1):
            self._status(instruction, received, "planning", f"attempt {attempt} of {self.max_attempts}", attempt)
            image_msg = self._fresh_image(since, held_image, time.monotonic() + self.input_timeout)
            if self._superseded():
                return  # a newer instruction or replan request: it gets its own status
            if image_msg is None:
                self._status(instruction, received, "failed", f"no path for {instruction!r}: no fresh camera "
                             f"image within {self.input_timeout:g} s", attempt)
                return
            # A retry sees a newer frame than the last attempt did: the same input would likely get the same answer.
            since = stamp_to_seconds(image_msg.header.stamp) + 1e-6
            try:
                request, image = self._request(instruction, image_msg)
                if self.grounder is not None and grounded is None:
                    grounded, grounding_error = self._ground(image, instruction, image_msg)
                    grounded_header = image_msg.header
                result = self.planner.plan(request) if self.planner is not None else None
            except (PlanError, ConversionError, ValueError) as error:
                stage = getattr(error, "stage", "input")
                if stage == "input":
                    self._drop("image", "invalid", str(error))
                error_message = f"{stage} failed: {error}"
                answer = getattr(error, "answer", None)
                self.get_logger().error(f"attempt {attempt}/{self.max_attempts} for {instruction!r}: {error_message}"
                                        + (f"; answer: {excerpt(answer)}" if answer else ""))
                continue
            if self._superseded():
                return  # the answer is for an instruction nobody waits for any more
            if grounded is not None:
                self._publish_grounding(*grounded, grounded_header, image if result is None else None)
            if result is None:
                detections, timing = grounded
                self._status(instruction, received, "ok", f"masks for {', '.join(d.label for d in detections)}",
                             attempt, {**timing, "total_sec": round(time.monotonic() - started, 6)})
                return
            if grounded is not None:
                result.timing.update(grounded[1])
            elif grounding_error:
                result.timing["grounding_error"] = grounding_error
            header = image_msg.header
            self.path_pub.publish(path_to_msg(result.path, header, image_msg.width, image_msg.height, instruction,
                                              self.model_id, result.answer))
            self.image_pub.publish(numpy_to_image(draw_path(image, result.path), "rgb8", header))
            timing = {**result.timing, "total_sec": round(time.monotonic() - started, 6)}
            self._status(instruction, received, "ok", f"path with {len(result.path)} points "
                         f"({len(result.parsed)} in the answer)"
                         + (f"; no masks: {grounding_error}" if grounded is None and grounding_error else ""),
                         attempt, timing)
            self.get_logger().info(f"path for {instruction!r}: {result.answer} ({timing})")
            return
        self._status(instruction, received, "failed", f"no path for {instruction!r} after {self.max_attempts} "
                     f"attempt{'s' if self.max_attempts > 1 else ''}: {error_message}", self.max_attempts)

    def _ground(self, image, instruction: str, image_msg: Image):
        """(detections, timing) and no error, or in mode both (None, the reason): a grounding failure must not
        cost the path. In mode masks it raises GroundingError: the masks are all there is."""
        try:
            return self.grounder.ground(image, instruction, stamp_to_seconds(image_msg.header.stamp)), ""
        except GroundingError as error:
            if self.planner is None:
                raise
            self.get_logger().warning(f"grounding failed for {instruction!r}, planning the path anyway: {error}")
            return None, str(error)

    def _publish_grounding(self, detections, timing, header, image=None):
        self.grounding_pub.publish(masks_to_msg(header, [d.label for d in detections], [d.phrase for d in detections],
                                                [d.mask for d in detections], [d.score for d in detections],
                                                [d.box for d in detections]))
        if image is not None:
            self.grounding_image_pub.publish(numpy_to_image(draw_masks(image, {d.label: d.mask for d in detections}),
                                                            "rgb8", header))

    def _request(self, instruction: str, image_msg: Image):
        info, camera_pose, ee_pose, scene = self.latest.get("camera_info", "camera_pose", "ee_pose", "scene")
        image = image_to_rgb(image_msg)
        if info is not None and (image_msg.width, image_msg.height) != (info.width, info.height):
            # The path is lifted with this camera model: an image of another size (a crop, another stream)
            # would put every point in the wrong place.
            raise ConversionError(f"the camera image is {image_msg.width}x{image_msg.height} but its camera_info "
                                  f"says {info.width}x{info.height}")
        camera = camera_from_msg(info, pose_from_msg(camera_pose).matrix()) if info and camera_pose else None
        request = VlmRequest(image=image, instruction=instruction, camera=camera,
                             tcp_pose=pose_from_msg(ee_pose) if ee_pose else None,
                             scene_json=scene.data if scene else None)
        return request, image

    # -- reporting --------------------------------------------------------------------------------------
    def _republish_status(self) -> None:
        """The latest status again with the current drop counts (its state and message unchanged)."""
        status = self._last_status
        if status is not None:
            status = {**status, "stamp": self._now(), "dropped": self.drops.counts}
            self.status_pub.publish(String(data=json.dumps(status)))

    def _drop(self, source: str, reason: str, detail: str = "") -> None:
        """Counts an input not used (in the status's `dropped` and on /diagnostics); logs each reason once per
        instruction."""
        line = self.drops.record(source, reason, detail)
        if line:
            self.get_logger().warning(line)

    def _status(self, instruction: str, received: float, state: str, message: str, attempt: int,
                timing: dict | None = None):
        """Latched status for policy_node and people, plus the same on /diagnostics."""
        status = {"instruction": instruction, "state": state, "message": message, "model_id": self.model_id,
                  "attempt": attempt, "max_attempts": self.max_attempts, "timing": timing or {},
                  "received": received, "stamp": self._now(), "dropped": self.drops.counts}
        self._last_status = status
        self.status_pub.publish(String(data=json.dumps(status)))
        if state == "failed":
            self.get_logger().error(message)
        level = {"planning": DiagnosticStatus.OK, "ok": DiagnosticStatus.OK}.get(state, DiagnosticStatus.ERROR)
        values = [KeyValue(key="instruction", value=instruction), KeyValue(key="state", value=state),
                  KeyValue(key="attempt", value=str(attempt))]
        values += [KeyValue(key=key, value=str(value)) for key, value in (timing or {}).items()]
        values += [KeyValue(key=key, value=value) for key, value in self.drops.diagnostic_values()]
        self._diagnostic = DiagnosticStatus(level=level, name="hamster_vlm_node", message=message,
                                            hardware_id=self.model_id, values=values)
        self._publish_diagnostic()

    def _publish_diagnostic(self):
        """The last status on /diagnostics, on change and once a second (as diagnostic_updater publishes): a
        subscriber that matched the node after a change still gets it (a fault test's monitor missed a failure)."""
        diagnostic = self._diagnostic
        if diagnostic is None:
            return
        array = DiagnosticArray(status=[diagnostic])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main():
    run_node(VlmNode)


if __name__ == "__main__":
    main()
