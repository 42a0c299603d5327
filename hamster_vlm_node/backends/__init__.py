from hamster_core.vlm import (VLM_BACKENDS, PromptedBackend, VlmBackend, VlmError, VlmRequest,
                                           gripper_image_position)

__all__ = ["VLM_BACKENDS", "PromptedBackend", "VlmBackend", "VlmError", "VlmRequest", "gripper_image_position"]
