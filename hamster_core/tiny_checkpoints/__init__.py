"""Tiny randomly initialised checkpoints of the real model families, built offline.

Model hubs are unreachable on the machines this project is tested on, so tests, demos and benchmarks build
small models from transformers configs (and locally built tokenizers) and load them back with the same
`from_pretrained` code a lab uses on a real checkpoint. Their outputs are meaningless; their code paths are
the real ones.
"""
