"""Compose the README's monitoring picture from a recorded demo episode (no rviz needed):

    .venv/bin/python tools/make_monitoring_screenshot.py BAG [--out docs/monitoring.png] [--max-kb 200]

Three panels, all read from the bag as the runtime published them: the VLM's path overlay
(/hamster/path_image), the perception overlay (/hamster/masks_image) at the moment the gripper closes, and a
3D view in the base frame of what rviz shows from /hamster/markers (lifted path red open / blue closed,
keyframes, grasp/place arrows, workspace box, current target) over the point cloud (/camera/points) and the
end effector's recorded trajectory (/robot/ee_pose). Record the bag with `hamster-demo` (it keeps these topics).
The PNG is palette-quantized to stay under --max-kb.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

MAX_CLOUD_POINTS = 6000


def _moment(bag) -> int:
    """Receive time (ns) to show: the first gripper close command, else the middle of the episode."""
    from hamster_ros import interfaces as t
    for stamp, msg in bag.messages(t.GRIPPER_COMMAND):
        if msg.command == 1:  # GripperCommand.GRASP
            return stamp
    times = bag.times(t.EE_POSE)
    if not len(times):
        raise SystemExit(f"{bag.path}: no {t.EE_POSE} in the bag")
    return int(times[len(times) // 2])


def _rgb(marker_colour) -> tuple[float, float, float, float]:
    return (marker_colour.r, marker_colour.g, marker_colour.b, max(marker_colour.a, 0.05))


def draw_markers(axis, markers) -> None:
    """The MarkerArray the way rviz draws it, in matplotlib's 3D axes (the marker types markers.py uses)."""
    from visualization_msgs.msg import Marker
    for marker in markers:
        points = np.array([[p.x, p.y, p.z] for p in marker.points]).reshape(-1, 3)
        if marker.action == Marker.DELETEALL:
            continue
        if marker.type == Marker.LINE_STRIP and len(points) > 1:
            colours = [_rgb(c) for c in marker.colors] or [_rgb(marker.color)] * len(points)
            for i in range(len(points) - 1):
                axis.plot(*points[i:i + 2].T, color=colours[i], linewidth=2.5)
        elif marker.type == Marker.SPHERE_LIST and len(points):
            axis.scatter(*points.T, color=_rgb(marker.color), s=40, depthshade=False, edgecolors="k", linewidths=0.4)
        elif marker.type == Marker.ARROW and len(points) == 2:
            start, end = points
            axis.quiver(*start, *(end - start), color=_rgb(marker.color)[:3], linewidth=2.5, arrow_length_ratio=0.35)
        elif marker.type == Marker.CUBE:
            centre = np.array([marker.pose.position.x, marker.pose.position.y, marker.pose.position.z])
            half = np.array([marker.scale.x, marker.scale.y, marker.scale.z]) / 2
            corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half + centre
            for a in range(8):
                for b in range(a + 1, 8):
                    if np.count_nonzero(corners[a] != corners[b]) == 1:
                        axis.plot(*corners[[a, b]].T, color=(0.3, 0.5, 1.0), linewidth=0.8, alpha=0.6)


def compose(bag_path: Path, out: Path, max_kb: float = 200) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    from hamster_ros import interfaces as t
    from hamster_bag.bag_episode import EpisodeBag
    from hamster_ros.conversions import image_to_rgb, pointcloud2_to_numpy

    with EpisodeBag(bag_path) as bag:
        missing = [topic for topic in (t.PATH_IMAGE, t.MASKS_IMAGE, t.MARKERS, t.EE_POSE) if not bag.has(topic)]
        if missing:
            raise SystemExit(f"{bag_path}: missing {', '.join(missing)}; record the episode with hamster-demo")
        moment = _moment(bag)
        instruction = next((msg.data for _, msg in bag.messages(t.INSTRUCTION)), "")
        path_image = image_to_rgb(bag.last_before(t.PATH_IMAGE, moment)[1])
        masks_image = image_to_rgb(bag.last_before(t.MASKS_IMAGE, moment)[1])
        markers = bag.last_before(t.MARKERS, moment)[1].markers
        trajectory = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                               for _, m in bag.messages(t.EE_POSE)])
        cloud = bag.last_before(t.POINTS, moment) if bag.has(t.POINTS) else None
        points, colours = pointcloud2_to_numpy(cloud[1]) if cloud else (np.empty((0, 3)), None)

    figure = plt.figure(figsize=(14, 4.3), dpi=100)
    grid = figure.add_gridspec(1, 3, width_ratios=(1, 1, 1.15))
    for index, (image, title) in enumerate(((path_image, f"{t.PATH_IMAGE} (VLM path)"),
                                            (masks_image, f"{t.MASKS_IMAGE} (perception, at the grasp)"))):
        axis = figure.add_subplot(grid[0, index])
        axis.imshow(image)
        axis.set_title(title, fontsize=9)
        axis.set_axis_off()
    axis = figure.add_subplot(grid[0, 2], projection="3d")
    cube = next((m for m in markers if m.type == 1 and m.action == 0), None)  # Marker.CUBE: the workspace box
    if cube is not None:
        centre = np.array([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z])
        half = np.array([cube.scale.x, cube.scale.y, cube.scale.z]) / 2 + 0.05
        low, high = centre - half, centre + half
        low[2] = min(low[2], -0.01)
    else:
        low, high = trajectory.min(0) - 0.15, trajectory.max(0) + 0.15
    if len(points):
        keep = np.all((points >= low) & (points <= high), axis=1)
        chosen = np.flatnonzero(keep)
        if len(chosen) > MAX_CLOUD_POINTS:
            chosen = np.random.default_rng(0).choice(chosen, MAX_CLOUD_POINTS, replace=False)
        axis.scatter(*points[chosen].T, c=(colours[chosen] / 255.0) if colours is not None else "0.6", s=1.5,
                     depthshade=False, linewidths=0)
    axis.plot(*trajectory.T, color="0.2", linewidth=1, linestyle="--", label="end effector (recorded)")
    draw_markers(axis, markers)
    axis.set_xlim(low[0], high[0])
    axis.set_ylim(low[1], high[1])
    axis.set_zlim(low[2], high[2])
    axis.set_box_aspect(high - low)
    axis.view_init(elev=35, azim=-150)
    axis.set_xlabel("x (m)", fontsize=7, labelpad=-2)
    axis.set_ylabel("y (m)", fontsize=7, labelpad=-2)
    axis.set_zlabel("z (m)", fontsize=7, labelpad=-2)
    axis.tick_params(labelsize=6, pad=0)
    axis.set_title(f"{t.MARKERS} + {t.POINTS} in frame base", fontsize=9)
    from matplotlib.lines import Line2D

    from hamster_core.path2d import GripperState
    from hamster_ros.markers import gripper_colour
    legend = [Line2D([], [], color="0.2", linestyle="--", label="end effector (recorded)"),
              Line2D([], [], color=_rgb(gripper_colour(GripperState.OPEN))[:3], linewidth=2.5,
                     label="lifted path, gripper open"),
              Line2D([], [], color=_rgb(gripper_colour(GripperState.CLOSED))[:3], linewidth=2.5,
                     label="lifted path, gripper closed"),
              Line2D([], [], color=(1, 0.8, 0.1), marker="o", linestyle="", markeredgecolor="k", label="keyframes"),
              Line2D([], [], color=(0.3, 0.5, 1.0), linewidth=0.8, label="workspace box")]
    axis.legend(handles=legend, loc="upper left", fontsize=6.5, framealpha=0.8)
    figure.suptitle(f"\u201c{instruction}\u201d", fontsize=10)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.88, wspace=0.05)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)

    image = PILImage.open(buffer).convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    for colours_in_palette in (256, 128, 64, 32):
        data = io.BytesIO()
        image.quantize(colours_in_palette, method=PILImage.Quantize.MEDIANCUT).save(data, format="PNG", optimize=True)
        if data.tell() <= max_kb * 1024:
            break
    out.write_bytes(data.getvalue())
    return {"out": str(out), "bytes": len(data.getvalue()), "palette": colours_in_palette, "size": image.size,
            "moment_ns": moment, "markers": len(markers)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path, help="a hamster-demo bag (mcap or sqlite3)")
    parser.add_argument("--out", type=Path, default=Path("docs/monitoring.png"))
    parser.add_argument("--max-kb", type=float, default=200.0, help="size limit of the PNG")
    args = parser.parse_args(argv)
    print(compose(args.bag, args.out, args.max_kb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
