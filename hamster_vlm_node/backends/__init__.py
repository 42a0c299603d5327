from hamster_vlm_node.backends.base import (VLM_BACKENDS, PromptedBackend, VlmBackend, VlmError, VlmRequest,
                                           gripper_image_position)

__all__ = ["VLM_BACKENDS", "PromptedBackend", "VlmBackend", "VlmError", "VlmRequest", "gripper_image_position"]
