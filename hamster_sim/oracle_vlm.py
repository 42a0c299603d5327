"""`oracle`: answers as HAMSTER's VLM would, from the simulator's ground truth.

The scripted expert's end-effector path for the scene is sampled densely, projected into the camera image,
simplified with Ramer-Douglas-Peucker (gripper-change points kept) and written in HAMSTER's answer format.
"""
from __future__ import annotations

import numpy as np

from hamster_core.path2d import Path2D, format_hamster_answer, simplify_rdp
from hamster_sim.expert import expert_keyframes
from hamster_sim.ground_truth import decode_scene_payload
from hamster_sim.scene import SceneDescription
from hamster_core.vlm import VLM_BACKENDS, VlmBackend, VlmError, VlmRequest

SAMPLE_SPACING = 0.01  # m between samples of the expert path before projection


def expert_path_2d(scene: SceneDescription, request: VlmRequest, rdp_epsilon: float) -> Path2D:
    waypoints = expert_keyframes(scene, request.tcp_pose)
    positions, gripper = [waypoints[0][0].position], [waypoints[0][1]]
    for (start, _), (end, state) in zip(waypoints[:-1], waypoints[1:]):
        steps = max(1, int(np.ceil(np.linalg.norm(end.position - start.position) / SAMPLE_SPACING)))
        for s in np.arange(1, steps + 1) / steps:
            positions.append(start.position + s * (end.position - start.position))
            gripper.append(gripper[-1] if s < 1 else state)
    pixels, depth = request.camera.project(np.array(positions))
    if np.any(depth <= 0):
        raise VlmError("the expert path passes behind the camera")
    # The camera may not see the whole path (e.g. the start pose above the image): keep it on the image edge.
    normalized = np.clip(request.camera.normalize(pixels), 0.0, 1.0)
    return simplify_rdp(Path2D(normalized, np.array(gripper, dtype=np.uint8)), rdp_epsilon)


@VLM_BACKENDS.register("oracle")
class OracleBackend(VlmBackend):
    required_inputs = frozenset({"scene_json", "camera", "tcp_pose"})

    def __init__(self, rdp_epsilon: float = 0.05):
        if not 0 <= rdp_epsilon < 1:
            raise ValueError(f"rdp_epsilon must be in [0, 1), got {rdp_epsilon}")
        self.rdp_epsilon = rdp_epsilon
        self.model_id = f"oracle(rdp_epsilon={rdp_epsilon})"

    def query(self, request: VlmRequest) -> str:
        if request.scene_json is None or request.camera is None or request.tcp_pose is None:
            raise VlmError("the oracle needs the simulator scene, the camera model and the end-effector pose")
        scene, _ = decode_scene_payload(request.scene_json)
        expected = scene.instruction.strip().lower().rstrip(".")
        if request.instruction.strip().lower().rstrip(".") != expected:
            raise VlmError(f"the oracle only knows the scene's task {scene.instruction!r}, "
                           f"not {request.instruction!r}")
        return format_hamster_answer(expert_path_2d(scene, request, self.rdp_epsilon))
