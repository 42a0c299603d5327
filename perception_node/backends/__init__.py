from hamster_core.perception.backend import (PERCEPTION_BACKENDS, Detection, PerceptionBackend, PerceptionFrame,
                                           box_of)

__all__ = ["PERCEPTION_BACKENDS", "Detection", "PerceptionBackend", "PerceptionFrame", "box_of"]
