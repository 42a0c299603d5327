"""The simulator's ground-truth message (`/sim/scene`, std_msgs/String): the scene description plus the
segmentation id of every object, as one JSON document."""
from __future__ import annotations

import json

from hamster_sim.scene import SceneDescription


def encode_scene_payload(scene: SceneDescription, segmentation_ids: dict[str, int]) -> str:
    return json.dumps({"scene": json.loads(scene.to_json()), "segmentation_ids": segmentation_ids})


def decode_scene_payload(text: str) -> tuple[SceneDescription, dict[str, int]]:
    try:
        payload = json.loads(text)
        scene = SceneDescription.from_json(json.dumps(payload["scene"]))
        ids = {str(name): int(value) for name, value in payload["segmentation_ids"].items()}
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(f"malformed simulator scene message: {error}") from error
    return scene, ids
