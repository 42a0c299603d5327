"""Evaluate recorded episodes offline: no ROS graph, the bag's frames read deterministically.

    hamster-replay-eval BAG [BAG ...] [--vlm-backend NAME] [--policy NAME|none] [--mapping FILE]
                        [--calibration FILE] [--out DIR]

Per bag:
- the camera pose and where it came from (`camera_pose_source`: tf_static, tf, mapping, calibration or
  camera_pose_topic; see hamster_bag.bag_episode); no pose at all is an error naming the missing frames;
- `tcp_path_2d`: the TCP (end-effector pose, interpolated) projected into the first colour frame's camera at
  every colour-frame stamp, [{"stamp_ns", "xy": [u / W, v / H]}] with u = fx * x / z + cx (continuous pixel
  coordinates, pixel i spans [i, i + 1)); points behind the camera are left out;
- `oracle_path` (the simplified proprioceptive path with its gripper actions, as a HAMSTER answer too) and
  `gripper_events` [{"stamp_ns", "state": "closed"|"open"}] (from gripper commands, else the finger joints);
- `sensor_latency_ms`: per bag topic with a header, receive time - header stamp (p50, p99, max);
- `calibration_file`: that camera pose as a hamster_core.calibration file, for camera_cloud when the bag is
  replayed into the graph;
- paths: the recorded Path2D (or a fresh one from --vlm-backend) against the oracle path, the end effector's
  recorded positions projected into the first frame's camera, clipped to the image and RDP-simplified like a
  HAMSTER label; Fréchet, DTW, start/end error, gripper-event agreement (hamster_core.path_metrics);
- policy: the named policy run on the first frame's observation, its keyframes against the keyframes of the
  recorded trajectory (hamster_core.keyframes); the policy's path input is the predicted path, else the oracle
  path (then the report says so);
- masks: IoU of the recorded GroundingMasks against the recorded segmentation + /sim/scene ids (simulator);
- timing: image stamp -> path / masks receive latency, command stream rate and jitter.
Writes report.json and report.md (plots and overlay thumbnails beside them; oracle_latency.png shows the oracle
path beside the latencies). Exits 2 naming a missing topic, frame, unknown type or bad option; 1 if a bag could
not be evaluated or a requested step (the VLM, the policy) failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hamster_core.geometry import Pose
from hamster_core.path2d import Path2D
from hamster_ros import interfaces as t
from hamster_bag.bag_episode import (BagError, Episode, EpisodeBag, TopicMapping, load_episode, oracle_path,
                                     sim_to_receive_time)

def vlm_path(episode: Episode, backend_name: str) -> tuple[Path2D, dict]:
    from hamster_core.geometry import Pose
    from hamster_core.path2d import parse_hamster_answer
    from hamster_core.vlm import VLM_BACKENDS, VlmRequest

    backend = VLM_BACKENDS.create(backend_name)
    trajectory = episode.trajectory
    request = VlmRequest(image=episode.rgb, instruction=episode.instruction, camera=episode.camera,
                         tcp_pose=Pose(trajectory.positions[0], trajectory.orientations[0]),
                         scene_json=episode.scene_json)
    answer = backend.query(request)
    return parse_hamster_answer(answer), {"model_id": backend.model_id, "raw_answer": answer}


def observation(episode: Episode, path: Path2D | None):
    """The policy node's Observation from the first frame (same conversions as policy_node)."""
    from hamster_core.geometry import Pose
    from hamster_core.policies.base import Observation
    from hamster_ros.conversions import masks_from_msg

    if episode.cloud is None:
        raise BagError(f"{episode.path}: no point cloud ({t.POINTS}) for the policy")
    points, colors = episode.cloud
    masks = masks_from_msg(episode.masks_msgs[0][1]) if episode.masks_msgs else {}
    trajectory = episode.trajectory
    return Observation(stamp=0.0, instruction=episode.instruction,
                       tcp_pose=Pose(trajectory.positions[0], trajectory.orientations[0]),
                       gripper_width=episode.gripper_width, points=points, colors=colors, camera=episode.camera,
                       rgb=episode.rgb, path=path, masks=masks)


def evaluate_policy(episode: Episode, policy_name: str, path: Path2D) -> dict:
    from hamster_core.keyframes import compare_keyframes, extract_keyframes
    from hamster_core.policies.base import POLICIES

    policy = POLICIES.create(policy_name)
    output = policy.select_action(observation(episode, path))
    trajectory = episode.trajectory
    expert = [k for _, k in extract_keyframes(trajectory.times, trajectory.positions, trajectory.orientations,
                                              trajectory.closed)]
    result = compare_keyframes(output.keyframes, expert)
    result["predicted"] = [_keyframe_json(k) for k in output.keyframes]
    result["reference"] = [_keyframe_json(k) for k in expert]
    return result


def _keyframe_json(keyframe) -> dict:
    return {"position": np.round(keyframe.pose.position, 4).tolist(),
            "orientation": np.round(keyframe.pose.orientation, 4).tolist(),
            "gripper": None if keyframe.gripper is None else keyframe.gripper.name.lower()}


def evaluate_masks(bag: EpisodeBag, episode: Episode, limit: int = 20) -> dict:
    """Mean IoU per label over up to `limit` recorded masks messages, against the segmentation image with the
    same stamp: label target_object is the scene's target object, placement_area its target container."""
    from hamster_core.path_metrics import mask_iou
    from hamster_ros.conversions import image_to_numpy, masks_from_msg
    from hamster_sim.ground_truth import decode_scene_payload

    if not episode.masks_msgs:
        return {"skipped": f"no {t.MASKS} in the episode"}
    if episode.scene_json is None or not bag.has(t.SEGMENTATION):
        return {"skipped": f"no ground truth ({t.SEGMENTATION} and {t.SIM_SCENE} are simulator-only)"}
    scene, ids = decode_scene_payload(episode.scene_json)
    truth_ids = {"target_object": ids.get(scene.target_object.name),
                 "placement_area": ids.get(scene.target_container.name)}
    segmentation = {}
    for _, msg in bag.messages(t.SEGMENTATION, episode.start_ns):
        segmentation[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
    scores: dict[str, list[float]] = {}
    compared = 0
    for _, msg in episode.masks_msgs:
        image = segmentation.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if image is None:
            continue
        ids_image = image_to_numpy(image)
        for label, mask in masks_from_msg(msg).items():
            if truth_ids.get(label) is not None and mask.shape == ids_image.shape:
                scores.setdefault(label, []).append(mask_iou(mask, ids_image == truth_ids[label]))
        compared += 1
        if compared >= limit:
            break
    if not compared:
        return {"skipped": "no masks message has a segmentation image with the same stamp (thinned recording)"}
    return {"frames": compared, **{f"iou_{label}": float(np.mean(values)) for label, values in scores.items()},
            "iou_min": float(min(min(v) for v in scores.values())) if scores else None}


def tcp_path_2d(bag: EpisodeBag, episode: Episode) -> list[dict]:
    """The TCP at every colour-frame stamp of the episode, projected into the first frame's camera."""
    trajectory, camera = episode.trajectory, episode.camera
    stamps = []
    for connection in bag.connections.get(t.COLOR_IMAGE, []):
        received, header = bag.header_stamps(connection)
        stamps.extend((header if episode.clock == "header" else received)[received >= episode.frame_ns])
    stamps = np.array(sorted(stamps), np.int64)
    pixels, depth = camera.project(trajectory.position_at(stamps))
    normalized = camera.normalize(pixels)
    return [{"stamp_ns": int(stamp), "xy": [round(float(x), 6), round(float(y), 6)]}
            for stamp, (x, y), z in zip(stamps, normalized, depth) if z > 0]


def sensor_latencies(bag: EpisodeBag) -> dict:
    """Receive time - header stamp per bag topic whose messages carry a header (ms: p50, p99, max, count).
    Stamps on a recorded /clock (the simulator) are mapped to receive time through it first."""
    to_receive = sim_to_receive_time(bag)
    latencies = {}
    for connection in sorted(bag.reader.connections, key=lambda c: c.topic):
        read = bag.header_stamps(connection) if connection.msgcount else None
        if read is None:
            continue
        received, stamps = read
        valid = stamps > 0                                     # unset stamps say nothing about latency
        if not np.any(valid):
            continue
        latency = (received[valid] - to_receive(stamps[valid] * 1e-9)) * 1e-6
        latencies[connection.topic] = {"count": int(valid.sum()),
                                       "p50_ms": round(float(np.percentile(latency, 50)), 2),
                                       "p99_ms": round(float(np.percentile(latency, 99)), 2),
                                       "max_ms": round(float(latency.max()), 2)}
    return latencies


def path_json(path: Path2D) -> dict:
    from hamster_core.path2d import format_hamster_answer
    return {"points": np.round(path.points, 4).tolist(), "gripper": path.gripper.astype(int).tolist(),
            "answer": format_hamster_answer(path)}


def evaluate_timing(bag: EpisodeBag, episode: Episode) -> dict:
    """Latency from the image a result was computed on (its header stamp) to the result's receive time."""
    from hamster_bag.bag_stats import episode_timing

    to_receive = sim_to_receive_time(bag)
    timing = {}
    if episode.path_info:
        timing["path_latency_ms"] = round(float(episode.path_info["receive_ns"]
                                                - to_receive(episode.path_info["stamp"])) * 1e-6, 1)
    if episode.masks_msgs:
        latency = np.array([received - to_receive(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
                            for received, msg in episode.masks_msgs]) * 1e-6
        timing.update(masks_latency_p50_ms=round(float(np.percentile(latency, 50)), 1),
                      masks_latency_p99_ms=round(float(np.percentile(latency, 99)), 1))
    if bag.has(t.CARTESIAN_TARGET):
        timing.update(episode_timing(bag.path, command_topic=bag.mapping.bag_names(t.CARTESIAN_TARGET)[0],
                                     status_topic=bag.mapping.bag_names(t.EXECUTOR_STATUS)[0]))
    return timing


def evaluate_bag(path: Path, args, out: Path) -> dict:
    from hamster_core.path_metrics import compare_paths

    mapping = TopicMapping.load(args.mapping)
    with EpisodeBag(path, mapping) as bag:
        episode = load_episode(bag, calibration=args.calibration_data)
        camera_pose = Pose.from_matrix(episode.camera.base_from_camera)
        result = {"bag": str(path), "instruction": episode.instruction,
                  "metadata": episode.metadata or bag.custom_data,
                  "camera_pose_source": episode.camera_pose_source,
                  "camera_pose": {"base_frame": episode.base_frame,
                                  "position": np.round(camera_pose.position, 5).tolist(),
                                  "orientation": np.round(camera_pose.orientation, 6).tolist()},
                  "gripper_source": episode.trajectory.gripper_source,
                  "gripper_events": [{"stamp_ns": stamp, "state": "closed" if closed else "open"}
                                     for stamp, closed in episode.trajectory.gripper_events],
                  "episode_seconds": round(float(episode.trajectory.times[-1]), 2),
                  "cloud_source": episode.cloud_source or None}
        oracle = oracle_path(episode)
        result["oracle_path"] = path_json(oracle)
        result["tcp_path_2d"] = tcp_path_2d(bag, episode)
        predicted, source = None, None
        if args.vlm_backend:
            try:
                predicted, info = vlm_path(episode, args.vlm_backend)
                source = f"vlm:{info['model_id']}"
            except (ValueError, RuntimeError, OSError) as error:   # the backend's and the parser's errors
                result["path"] = {"source": f"vlm:{args.vlm_backend}", "error": f"{type(error).__name__}: {error}"}
        elif episode.recorded_path is not None:
            predicted, source = episode.recorded_path, f"recorded:{episode.path_info['model_id']}"
        if predicted is not None:
            result["path"] = {"source": source, **compare_paths(predicted, oracle)}
        elif "path" not in result:
            result["path"] = {"skipped": f"no {t.PATH} recorded and no --vlm-backend"}
        if args.policy == "none":
            result["policy"] = {"skipped": "--policy none"}
        else:
            try:
                policy = evaluate_policy(episode, args.policy, predicted if predicted is not None else oracle)
                result["policy"] = {"name": args.policy,
                                    "path_input": source or "oracle (hindsight: the executed trajectory)", **policy}
            except ValueError as error:  # PolicyError and invalid inputs: report, do not abort the batch
                result["policy"] = {"name": args.policy, "error": str(error)}
        result["masks"] = evaluate_masks(bag, episode)
        result["timing"] = evaluate_timing(bag, episode)
        result["sensor_latency_ms"] = sensor_latencies(bag)
        result["figures"] = write_figures(episode, oracle, predicted, result, out / _slug(path))
        result["calibration_file"] = write_calibration(episode, bag, out / _slug(path) / "calibration.yaml")
    return result


def write_calibration(episode: Episode, bag: EpisodeBag, path: Path) -> str:
    """The camera pose the evaluation used, as a calibration file for camera_cloud (replaying the bag into the
    graph: README, Offline evaluation)."""
    from hamster_core.calibration import CameraCalibration, save_calibration

    info = bag.last_before(t.COLOR_INFO, episode.frame_ns)[1]
    calibration = CameraCalibration(episode.camera.base_from_camera, episode.base_frame,
                                    info.header.frame_id or "camera_color_optical_frame", episode.camera.width,
                                    episode.camera.height, source=f"{episode.path}: {episode.camera_pose_source}")
    save_calibration(calibration, path, comment="written by hamster-replay-eval from the bag's camera pose")
    return str(path)


def failed_steps(result: dict) -> list[str]:
    """The requested steps of one bag's evaluation that failed (path from the VLM, policy)."""
    return [f"{name}: {result[name]['error']}" for name in ("path", "policy") if "error" in result.get(name, {})]


def _slug(path: Path) -> str:
    parts = [p for p in path.resolve().parts[-3:] if p not in ("/",)]
    return "_".join(parts).replace(".", "_")


def write_figures(episode: Episode, oracle: Path2D, predicted: Path2D | None, result: dict, folder: Path) -> dict:
    """Path vs oracle on the first frame, keyframe errors, and overlay thumbnails (masks, path)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    from hamster_core.drawing import draw_masks, draw_path
    from hamster_ros.conversions import masks_from_msg

    folder.mkdir(parents=True, exist_ok=True)
    figures = {}
    height, width = episode.rgb.shape[:2]
    figure, axis = plt.subplots(figsize=(4.5, 3.6), dpi=100)
    axis.imshow(episode.rgb)
    for path, colour, label in ((oracle, "lime", "oracle (proprioception)"), (predicted, "magenta", "predicted")):
        if path is None:
            continue
        pixels = path.to_pixels(width, height)
        axis.plot(pixels[:, 0], pixels[:, 1], "-o", color=colour, markersize=3, linewidth=1.5, label=label)
        closed = path.gripper.astype(bool)
        axis.scatter(pixels[closed, 0], pixels[closed, 1], s=30, facecolors="none", edgecolors=colour)
    axis.set_axis_off()
    axis.legend(loc="lower left", fontsize=7)
    figure.tight_layout()
    figures["paths"] = str(folder / "paths.png")
    figure.savefig(figures["paths"])
    plt.close(figure)

    policy = result.get("policy", {})
    if "translation_error_mean" in policy:
        names = ["mean", "max", "grasp", "release"]
        values = [policy["translation_error_mean"], policy["translation_error_max"],
                  policy["grasp_translation_error"] or 0.0, policy["release_translation_error"] or 0.0]
        figure, axis = plt.subplots(figsize=(4, 2.5), dpi=100)
        axis.bar(names, np.array(values) * 100, color=["tab:blue", "tab:blue", "tab:orange", "tab:green"])
        axis.set_ylabel("keyframe error (cm)")
        figure.tight_layout()
        figures["keyframe_errors"] = str(folder / "keyframe_errors.png")
        figure.savefig(figures["keyframe_errors"])
        plt.close(figure)

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100, gridspec_kw={"width_ratios": [1.2, 1]})
    left.imshow(episode.rgb)
    pixels = oracle.to_pixels(width, height)
    left.plot(pixels[:, 0], pixels[:, 1], "-o", color="lime", markersize=3, linewidth=1.5)
    for index in np.flatnonzero(np.diff(oracle.gripper.astype(int))) + 1:
        closing = bool(oracle.gripper[index])
        left.annotate("close" if closing else "open", pixels[index], color="red" if closing else "cyan", fontsize=8)
    tcp = np.array([p["xy"] for p in result.get("tcp_path_2d", [])]).reshape(-1, 2) * [width, height]
    left.plot(tcp[:, 0], tcp[:, 1], ".", color="white", markersize=1.5, label="TCP at colour frames")
    left.set_title(f"oracle path (camera pose: {episode.camera_pose_source})", fontsize=8)
    left.set_axis_off()
    latencies = result.get("sensor_latency_ms", {})
    names = list(latencies)
    right.barh(range(len(names)), [latencies[n]["p50_ms"] for n in names], color="tab:blue", label="p50")
    right.scatter([latencies[n]["p99_ms"] for n in names], range(len(names)), color="tab:red", s=12, label="p99",
                  zorder=3)
    right.set_yticks(range(len(names)), [n if len(n) < 42 else "..." + n[-39:] for n in names], fontsize=6)
    right.set_xlabel("receive - header stamp (ms)")
    right.legend(fontsize=7)
    figure.tight_layout()
    figures["oracle_latency"] = str(folder / "oracle_latency.png")
    figure.savefig(figures["oracle_latency"])
    plt.close(figure)

    overlay = draw_path(episode.rgb, predicted if predicted is not None else oracle)
    if episode.masks_msgs:
        overlay = draw_masks(overlay, masks_from_msg(episode.masks_msgs[0][1]))
    figures["overlay"] = str(folder / "overlay.png")
    PILImage.fromarray(overlay).save(figures["overlay"])
    return figures


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(results: list[dict], out: Path) -> str:
    lines = ["# Offline evaluation", "", f"{len(results)} bag(s).", "",
             "| bag | path source | Fréchet | DTW | start err | end err | gripper events | kf trans (m) | "
             "kf rot (deg) | grasp err (m) | IoU target | IoU place | path latency (ms) | command Hz |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {Path(r['bag']).name} | error: {r['error']} |" + " |" * 12)
            continue
        p, k, m, tm = r["path"], r["policy"], r["masks"], r["timing"]
        lines.append("| " + " | ".join([
            str(Path(r["bag"]).parent.name or r["bag"]), p.get("source", "-"), _fmt(p.get("frechet")),
            _fmt(p.get("dtw")), _fmt(p.get("start_error")), _fmt(p.get("end_error")),
            _fmt(p.get("gripper_same_sequence")), _fmt(k.get("translation_error_mean")),
            _fmt(k.get("rotation_error_mean_deg"), 1), _fmt(k.get("grasp_translation_error")),
            _fmt(m.get("iou_target_object")), _fmt(m.get("iou_placement_area")), _fmt(tm.get("path_latency_ms"), 1),
            _fmt(tm.get("command_rate_hz"), 1)]) + " |")
    lines.append("")
    for r in results:
        if "error" in r:
            continue
        lines += [f"## {r['bag']}", "", f"Instruction: *{r['instruction']}*", ""]
        for name, key in (("path vs oracle", "paths"), ("oracle path and sensor latencies", "oracle_latency"),
                          ("overlay", "overlay"), ("keyframe errors", "keyframe_errors")):
            if key in r["figures"]:
                lines.append(f"![{name}]({Path(r['figures'][key]).relative_to(out)})")
        excerpt = ("camera_pose_source", "camera_pose", "gripper_events", "path", "masks", "timing", "sensor_latency_ms")
        lines += ["", "```json", json.dumps({k: r[k] for k in excerpt}, indent=1), "```", ""]
        if "error" in r["policy"]:
            lines += [f"Policy failed: {r['policy']['error']}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", type=Path, nargs="+", help="rosbag2 folders (mcap or sqlite3)")
    parser.add_argument("--vlm-backend", default=None, help="compute a fresh path with this VLM backend")
    parser.add_argument("--policy", default="path_follower", help="policy to run on the first frame (none: skip)")
    parser.add_argument("--mapping", type=Path, default=None, help="topic mapping YAML (e.g. real-robot bags)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="camera calibration YAML (hamster_core.calibration): overrides the bag's /tf_static")
    parser.add_argument("--out", type=Path, default=Path("runs/replay_eval"), help="report folder")
    args = parser.parse_args(argv)
    try:
        from hamster_core.calibration import load_calibration
        from hamster_core.policies.base import POLICIES
        if args.policy != "none":
            POLICIES.get(args.policy)
        args.calibration_data = load_calibration(args.calibration) if args.calibration else None
        if args.vlm_backend:
            from hamster_core.vlm import VLM_BACKENDS
            VLM_BACKENDS.get(args.vlm_backend)
        TopicMapping.load(args.mapping)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    results, input_errors = [], []
    for bag in tqdm(args.bags, desc="bags", unit="bag", file=sys.stderr, disable=len(args.bags) < 2):
        try:
            results.append(evaluate_bag(bag, args, args.out))
        except BagError as error:
            input_errors.append(str(error))
            results.append({"bag": str(bag), "error": str(error)})
        except Exception as error:  # one broken bag must not lose the others' results
            results.append({"bag": str(bag), "error": f"{type(error).__name__}: {error}"})
    (args.out / "report.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "report.md").write_text(markdown_report(results, args.out))
    print(json.dumps({"report": str(args.out / "report.md"), "bags": len(results),
                      "failed": [r["bag"] for r in results if "error" in r]}), flush=True)
    for error in input_errors:
        print(f"hamster-replay-eval: error: {error}", file=sys.stderr)
    step_failures = [(r["bag"], failure) for r in results if "error" not in r for failure in failed_steps(r)]
    for bag, failure in step_failures:
        print(f"hamster-replay-eval: {bag}: {failure}", file=sys.stderr)
    if input_errors:
        return 2
    return 1 if any("error" in r for r in results) or step_failures else 0


if __name__ == "__main__":
    sys.exit(main())
