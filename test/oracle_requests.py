"""A simulated scene as the oracle VLM and the ground-truth perception get it (scene payload and segmentation ids),
and VLM requests about it (shared by the simulator backend tests and the VLM planner tests)."""
import numpy as np

from hamster_core.camera import PinholeCamera, look_at
from hamster_core.geometry import TOP_DOWN, Pose
from hamster_core.vlm import VlmRequest
from hamster_sim.ground_truth import encode_scene_payload
from hamster_sim.scene import sample_scene

SCENE = sample_scene(3)
IDS = {obj.name: i + 1 for i, obj in enumerate(SCENE.objects)} | \
      {c.name: len(SCENE.objects) + i + 1 for i, c in enumerate(SCENE.containers)}
PAYLOAD = encode_scene_payload(SCENE, IDS)
CAMERA = PinholeCamera.from_fovy(320, 240, 60, look_at(np.array([1.3, 0.0, 0.9]), np.array([0.45, 0.0, 0.0])))
START = Pose(np.array([0.4, 0.0, 0.35]), TOP_DOWN)


def request(instruction=SCENE.instruction, **overrides):
    fields = dict(image=np.zeros((240, 320, 3), np.uint8), instruction=instruction, camera=CAMERA, tcp_pose=START,
                  scene_json=PAYLOAD)
    fields.update(overrides)
    return VlmRequest(**fields)
