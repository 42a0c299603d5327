"""Simulator throughput on this machine: physics steps/s with the 1 kHz controller, render fps (RGB + depth +
segmentation) at 320x240 and 640x480, and the real-time factor of 1 kHz physics with the camera at 10 Hz.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_sim.py [--seconds 5]
The arm follows a circle (0.1 m radius, 0.5 Hz) above the table while measuring, so the controller and the
contacts do representative work.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # stable timings on few cores

import numpy as np  # noqa: E402

from hamster_sim.world import FrankaWorld  # noqa: E402  (selects headless rendering before mujoco loads)
from hamster_core.geometry import TOP_DOWN, Pose  # noqa: E402
from hamster_sim.scene import sample_scene  # noqa: E402

CONTROL_PERIOD_STEPS = 10  # targets at 100 Hz, as the executor streams them
CIRCLE_CENTRE = np.array([0.5, 0.0, 0.3])


def circle_target(t: float) -> Pose:
    angle = 2 * np.pi * 0.5 * t
    return Pose(CIRCLE_CENTRE + 0.1 * np.array([np.cos(angle), np.sin(angle), 0.0]), TOP_DOWN)


def run(world: FrankaWorld, seconds: float, camera_rate_hz: float | None) -> float:
    """Simulate `seconds` following the circle, rendering at camera_rate_hz; returns the wall-clock seconds."""
    world.reset()
    world.set_cartesian_target(circle_target(0.0))
    world.step(1500)  # reach the circle first
    render_every = None if camera_rate_hz is None else int(round(1000 / camera_rate_hz))
    steps = int(seconds * 1000)
    start = time.perf_counter()
    for step in range(0, steps, CONTROL_PERIOD_STEPS):
        world.set_cartesian_target(circle_target(world.time))
        world.step(CONTROL_PERIOD_STEPS)
        if render_every is not None and (step + CONTROL_PERIOD_STEPS) % render_every == 0:
            world.render()
    return time.perf_counter() - start


def render_fps(world: FrankaWorld, frames: int) -> float:
    world.render()  # first frame uploads the meshes
    start = time.perf_counter()
    for _ in range(frames):
        world.render()
    return frames / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="simulated seconds per measurement")
    parser.add_argument("--frames", type=int, default=50, help="frames per render measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scene = sample_scene(args.seed)
    print(f"scene seed {args.seed}: {scene.instruction}")

    results = {}
    with FrankaWorld(scene) as world:
        wall = run(world, args.seconds, camera_rate_hz=None)
        results["physics_steps_per_s"] = round(args.seconds * 1000 / wall)
        print(f"physics + controller: {results['physics_steps_per_s']:8d} steps/s "
              f"(real-time factor {args.seconds / wall:.1f})")

    for width, height in ((320, 240), (640, 480)):
        for mesh_cell, label in ((0.004, "decimated"), (0.0, "full")):
            with FrankaWorld(scene, image_width=width, image_height=height, mesh_cell=mesh_cell) as world:
                fps = render_fps(world, args.frames)
                results[f"render_fps_{width}x{height}_{label}"] = round(fps, 1)
                line = f"render {width}x{height} rgb+depth+seg, {label} meshes: {fps:6.1f} fps"
                if mesh_cell:
                    wall = run(world, args.seconds, camera_rate_hz=10.0)
                    results[f"real_time_factor_camera_10hz_{width}x{height}"] = round(args.seconds / wall, 2)
                    line += f"   1 kHz physics + 10 Hz camera: real-time factor {args.seconds / wall:.2f}"
                print(line, flush=True)
    print(json.dumps(results))  # last line: machine-readable for bench/run_all.py


if __name__ == "__main__":
    main()
