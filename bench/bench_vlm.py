"""VLM path handling cost: answer parsing, RDP, resampling, overlay and path-channel drawing per call, and the
`openai` backend's request overhead against a local HAMSTER-style server next to the server's own handling time.

The model's own time is not measured here (no real VLM runs on these machines): these are the costs the
runtime adds around it. Run:
    .venv/bin/python bench/bench_vlm.py
Prints the median and the minimum of repeated runs in milliseconds (the shared cores are noisy: the minimum
is the cost, the median what a busy machine adds) and writes bench/results_vlm.json.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # stable timings on the shared cores

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hamster_core.drawing import draw_path, draw_path_channels  # noqa: E402
from hamster_core.path2d import (  # noqa: E402
    Path2D, format_hamster_answer, parse_hamster_answer, resample, simplify_rdp,
)
from hamster_core.vlm import VLM_BACKENDS, VlmRequest  # noqa: E402
from hamster_core.chat_server import ChatServer  # noqa: E402

WIDTH, HEIGHT = 640, 480
RESULTS = Path(__file__).resolve().parent / "results_vlm.json"


def timings_ms(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return {"median_ms": round(1e3 * float(np.median(times)), 4), "min_ms": round(1e3 * min(times), 4)}


def report(title, rows):
    print(f"{title}\n  {'':44s} {'median ms':>10s} {'min ms':>10s}")
    for name, row in rows.items():
        print(f"  {name:44s} {row['median_ms']:10.3f} {row['min_ms']:10.3f}")


def typical_answer(points: int) -> str:
    """A HAMSTER-like answer: a curved reach, a grasp halfway, a release at the end."""
    t = np.linspace(0.0, 1.0, points)
    xy = np.stack([0.15 + 0.7 * t, 0.5 - 0.3 * np.sin(np.pi * t)], axis=1)
    gripper = np.where((t >= 0.5) & (t < 1.0), 1, 0)
    return format_hamster_answer(Path2D(xy, gripper.astype(np.uint8)))


def bench_path_handling(repeats: int = 200) -> dict:
    image = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
    results = {}
    for points in (8, 64):
        answer = typical_answer(points)
        path = parse_hamster_answer(answer, max_points=64)
        simplified = simplify_rdp(path, 0.05)
        results[f"parse ({points} points, {len(answer)} chars)"] = timings_ms(
            lambda: parse_hamster_answer(answer, max_points=64), repeats)
        results[f"rdp epsilon 0.05 ({points} points)"] = timings_ms(lambda: simplify_rdp(path, 0.05), repeats)
        results[f"resample to 50 ({points} points)"] = timings_ms(lambda: resample(path, 50), repeats)
        results[f"draw_path overlay {WIDTH}x{HEIGHT} ({points} -> {len(simplified)} points)"] = timings_ms(
            lambda: draw_path(image, simplified), repeats // 4)
        results[f"draw_path_channels {WIDTH}x{HEIGHT} ({points} -> {len(simplified)} points)"] = timings_ms(
            lambda: draw_path_channels(HEIGHT, WIDTH, simplified), repeats // 4)
        results[f"parse + rdp + overlay ({points} points)"] = timings_ms(
            lambda: draw_path(image, simplify_rdp(parse_hamster_answer(answer, max_points=64), 0.05)), repeats // 4)
    return results


def bench_openai_overhead(repeats: int = 30) -> dict:
    """Client round trip vs. the server's own handling (decode JSON + image, answer): the difference is the
    client's encoding, HTTP and parsing of the response."""
    answer = typical_answer(8)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    request = VlmRequest(image=image, instruction="pick up the red cube and put it in the blue bowl")
    results = {}
    with ChatServer(lambda chat: answer, model="bench") as server:
        for image_format in ("jpeg", "png"):
            client = VLM_BACKENDS.create("openai", base_url=server.base_url, model="bench", retries=0,
                                         image_format=image_format)
            client.query(request)  # warm up
            server.served.clear()
            round_trip = timings_ms(lambda: client.query(request), repeats)
            handling = [1e3 * s.handling_sec for s in server.served]
            payload = len(json.dumps(client.request_body(request)))
            results[f"openai query {WIDTH}x{HEIGHT} {image_format} ({payload // 1024} KiB request)"] = round_trip
            results[f"  server handling {image_format}"] = {"median_ms": round(float(np.median(handling)), 4),
                                                            "min_ms": round(min(handling), 4)}
            results[f"  client overhead {image_format} (median difference)"] = {
                "median_ms": round(round_trip["median_ms"] - float(np.median(handling)), 4),
                "min_ms": round(round_trip["min_ms"] - min(handling), 4)}
    return results


def main():
    handling = bench_path_handling()
    report("Path handling per call", handling)
    overhead = bench_openai_overhead()
    report("openai backend against a local HAMSTER-style server", overhead)
    RESULTS.write_text(json.dumps({"path_handling": handling, "openai_backend": overhead,
                                   "image": [WIDTH, HEIGHT]}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
