"""VLM backends of the VLM node, registered by name through the `hamster_runtime.vlm_backends` entry points."""
