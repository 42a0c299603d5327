"""The `transformers` backend on the tiny random checkpoint of each family (hamster_core.tiny_checkpoints.
vlm_families): load time and time per query (prompt -> chat template -> processor -> generate of 16 new tokens ->
decode) on a 640x480 image, CPU, one torch thread. These are the backend's own costs around a model that is ~0.2M
parameters: a real checkpoint's forward pass dominates them by orders of magnitude.
    .venv/bin/python bench/bench_vlm_families.py
writes bench/results_vlm_families.json.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # stable timings on the shared cores
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hamster_core.tiny_checkpoints.vlm_families import FAMILIES, build_tiny_family  # noqa: E402
from hamster_core.vlm import VLM_BACKENDS, VlmRequest  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results_vlm_families.json"
REPEATS = 10


def main():
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    request = VlmRequest(image=image, instruction="pick up the red cube and put it in the blue bowl")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for family in FAMILIES:
            path = build_tiny_family(family, Path(folder) / family)
            started = time.perf_counter()
            backend = VLM_BACKENDS.create("transformers", checkpoint=str(path), max_new_tokens=16)
            load = time.perf_counter() - started
            backend.query(request)  # warm-up
            times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                backend.query(request)
                times.append(time.perf_counter() - started)
            parameters = sum(p.numel() for p in backend.model.parameters())
            results[family] = {"parameters": parameters, "load_ms": round(1e3 * load, 1),
                               "query_median_ms": round(1e3 * float(np.median(times)), 1),
                               "query_min_ms": round(1e3 * min(times), 1),
                               "new_tokens": backend.last_call["new_tokens"]}
            print(f"{family:12s} {parameters:>8d} params  load {results[family]['load_ms']:7.1f} ms  query median "
                  f"{results[family]['query_median_ms']:6.1f} ms  min {results[family]['query_min_ms']:6.1f} ms  "
                  f"({results[family]['new_tokens']} new tokens)", flush=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "image": [640, 480],
                                   "families": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
