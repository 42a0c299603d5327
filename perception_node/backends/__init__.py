"""Perception backends of perception_node, registered through the `hamster_runtime.perception_backends` entry points."""
