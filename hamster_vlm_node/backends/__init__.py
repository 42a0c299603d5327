from hamster_vlm_node.backends.base import VLM_BACKENDS, VlmBackend, VlmError, VlmRequest

__all__ = ["VLM_BACKENDS", "VlmBackend", "VlmError", "VlmRequest"]
