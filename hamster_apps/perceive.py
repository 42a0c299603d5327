"""hamster-perceive: the perception pipeline (detect -> track -> segment) on an image, a folder of images or a
video, without ROS. Writes one annotated image per frame to --out, the per-frame boxes and track states to
--json (default OUT/perception.json) and, with --masks DIR, every visible object's mask as a PNG.

  hamster-perceive frames/ --instruction "pick up the red cube and put it in the blue bowl" \\
      --detector-checkpoint IDEA-Research/grounding-dino-tiny --segmenter-checkpoint facebook/sam-vit-base --out out/
  hamster-perceive clip.mp4 --queries "target_object=red cube" --detector owlv2 --detector-checkpoint ...
  hamster-perceive frames/ --init-boxes target_object=40,60,84,96 --detector none --segmenter box --json t.json

The JSON holds {"frames": [{"index", "frame", "objects": {LABEL: {"box": [x0, y0, x1, y1] | null, "state":
detected | tracked | occluded | lost, ...}}, ...}]}; a box is given only while the object is detected or tracked.

Exit codes: 0 done, 2 bad arguments or input (unreadable image/video, bad checkpoint, bad query or box), all
checked before any model loads.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MIN_SIDE_PX = 32          # smaller images are rejected: the models' processors cannot tell their layout


class InputError(ValueError):
    pass


def parse_queries(entries: list[str], instruction: str | None, boxes: dict | None = None) -> dict[str, str]:
    """label -> phrase from --instruction and --queries; labels given only an --init-boxes box are their own
    phrase (the detector, if any, is then asked for the label's words)."""
    from hamster_core.instruction import parse_pick_place_instruction
    queries = {}
    if instruction:
        target, placement = parse_pick_place_instruction(instruction)
        queries.update(target_object=target, placement_area=placement)
    for entry in entries:
        label, sep, phrase = entry.partition("=")
        if not sep or not label.strip() or not phrase.strip():
            raise ValueError(f"--queries entries must be 'label=phrase', got {entry!r}")
        queries[label.strip()] = phrase.strip()
    for label in boxes or {}:
        queries.setdefault(label, label.replace("_", " "))
    if not queries:
        raise ValueError("nothing to look for: give --queries label=phrase ..., --instruction or --init-boxes")
    return queries


def parse_boxes(entries: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """['label=x0,y0,x1,y1', ...] -> {label: box}; ValueError naming a malformed entry."""
    boxes = {}
    for entry in entries:
        label, sep, numbers = entry.partition("=")
        try:
            box = tuple(float(v) for v in numbers.split(","))
        except ValueError:
            box = ()
        if not sep or not label.strip() or len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            raise ValueError(f"--init-boxes entries must be 'label=x0,y0,x1,y1' with x0 < x1 and y0 < y1 (pixels), "
                             f"got {entry!r}")
        boxes[label.strip()] = box
    return boxes


def check_boxes(boxes: dict, width: int, height: int) -> None:
    for label, (x0, y0, x1, y1) in boxes.items():
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise InputError(f"--init-boxes {label}={x0:g},{y0:g},{x1:g},{y1:g} is outside the first frame "
                             f"({width}x{height}): give pixel corners inside it")


def writable_folder(path: Path, option: str) -> Path:
    """Create `path` (a folder) or say in one line why it cannot be written."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file, not a folder: give a folder to write into")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{option} {path} cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path} is not writable: choose another folder")
    return path


def image_files(source: Path) -> list[Path] | None:
    """The images to read (a folder's, sorted by name, or the one image); None for a video file."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {source}")
        return files
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [source]
    if source.is_file():
        return None
    raise InputError(f"input {source} does not exist")


def read_image(path: Path):
    import cv2
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_size(name: str, shape, first_shape) -> None:
    height, width = shape[:2]
    if min(height, width) < MIN_SIDE_PX:
        raise InputError(f"frame {name} is {width}x{height}: images need at least {MIN_SIDE_PX} px on each side")
    if first_shape is not None and shape[:2] != first_shape[:2]:
        raise InputError(f"frame {name} is {width}x{height} but the first frame is {first_shape[1]}x{first_shape[0]}: "
                         f"every frame of a clip must have the same size")


def frames(source: Path):
    """(name, RGB uint8) for an image, every image in a folder (sorted by name), or every video frame. Every
    image of a folder is read once up front, so a bad or odd-sized one fails before any model loads."""
    import cv2
    files = image_files(source)
    if files is not None:
        first_shape = None
        for path in files:
            shape = read_image(path).shape
            check_size(path.name, shape, first_shape)
            first_shape = first_shape or shape
        for path in files:
            yield path.stem, read_image(path)
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise InputError(f"cannot open {source} as an image or a video")
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            check_size(f"{index} of {source}", bgr.shape, None)
            yield f"frame_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise InputError(f"video {source} has no readable frames")


def run(args) -> dict:
    import cv2
    from hamster_core.perception.backend import PerceptionFrame
    from hamster_core.perception.pipeline import annotate, build_pipeline
    boxes = parse_boxes(args.init_boxes)
    queries = parse_queries(args.queries, args.instruction, boxes)
    if args.detector == "sim_ground_truth":
        raise ValueError("the sim_ground_truth detector needs the simulator; use grounding_dino, owlv2 or none")
    if args.detector == "none" and not boxes:
        raise ValueError("--detector none needs --init-boxes label=x0,y0,x1,y1 for every object to follow")
    out = writable_folder(args.out, "--out")
    masks_dir = writable_folder(args.masks, "--masks") if args.masks else None
    json_path = args.json or out / "perception.json"
    writable_folder(json_path.parent, "--json's folder")
    if json_path.is_dir():
        raise InputError(f"--json {json_path} is a folder: give a file name")
    source = frames(args.input)
    first = next(source)  # unreadable input fails before any model loads
    check_boxes(boxes, first[1].shape[1], first[1].shape[0])
    pipeline = build_pipeline(
        detector=args.detector, detector_checkpoint=args.detector_checkpoint, segmenter=args.segmenter,
        segmenter_checkpoint=args.segmenter_checkpoint, tracker=args.tracker,
        tracker_checkpoint=args.tracker_checkpoint, device=args.device,
        box_threshold=args.box_threshold, text_threshold=args.text_threshold, redetect_every_n=args.redetect_every_n,
        segment_every_k=args.segment_every_k)
    pipeline.set_queries(queries)
    records = []
    for index, (name, rgb) in enumerate(itertools.chain([first], source)):
        frame = PerceptionFrame(float(index), rgb)
        output = pipeline.start_tracks(frame, boxes) if index == 0 and boxes else pipeline.process(frame)
        image_path = out / f"{name}_annotated.png"
        cv2.imwrite(str(image_path), cv2.cvtColor(annotate(rgb, output.detections, output.states), cv2.COLOR_RGB2BGR))
        found = {d.label: d for d in output.detections}
        objects = {}
        for label, state in output.states.items():
            box = output.boxes.get(label)
            entry = {"box": None if box is None else [round(v, 1) for v in box], "state": state.value}
            if label in found:
                entry.update(score=round(found[label].score, 4), mask_area=int(found[label].mask.sum()))
                if masks_dir is not None:
                    entry["mask"] = str(masks_dir / f"{name}_{label}.png")
                    cv2.imwrite(entry["mask"], found[label].mask.astype("uint8") * 255)
            if label in output.why:
                entry["why"] = output.why[label]
            objects[label] = entry
        records.append({"index": index, "frame": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                        "detected": output.detected, "detect_reason": output.reason, "segmented": output.segmented,
                        "timings_ms": output.timings_ms, "annotated": str(image_path), "objects": objects})
    result = {"input": str(args.input), "queries": queries, "init_boxes": boxes, "detector": args.detector,
              "segmenter": args.segmenter, "tracker": args.tracker, "frames": records}
    json_path.write_text(json.dumps(result, indent=1))
    result["json"] = str(json_path)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="an image, a folder of images, or a video file")
    parser.add_argument("--queries", nargs="*", default=[], metavar="LABEL=PHRASE",
                        help='e.g. "target_object=red cube" "placement_area=blue bowl"')
    parser.add_argument("--instruction", help="a pick-and-place instruction; gives target_object and placement_area")
    parser.add_argument("--init-boxes", nargs="*", default=[], metavar="LABEL=X0,Y0,X1,Y1",
                        help="start these objects' tracks from these pixel boxes on the first frame")
    parser.add_argument("--out", type=Path, default=Path("perceive_out"), help="folder for the annotated images")
    parser.add_argument("--json", type=Path, help="per-frame boxes and states (default OUT/perception.json)")
    parser.add_argument("--masks", type=Path, help="folder for the masks, FRAME_LABEL.png (255 inside)")
    parser.add_argument("--detector", default="grounding_dino",
                        help="grounding_dino | owlv2 | sam3 | none (only --init-boxes, found again by appearance)")
    parser.add_argument("--detector-checkpoint", default="", help="folder (save_pretrained) or hub id")
    parser.add_argument("--segmenter", default="sam", help="sam | sam2 | segment_anything | box")
    parser.add_argument("--segmenter-checkpoint", default="")
    parser.add_argument("--tracker", default="template",
                        help="template | csrt | kcf | mil | sam2_video | none (detect every frame)")
    parser.add_argument("--tracker-checkpoint", default="", help="sam2_video: a Sam2VideoModel folder or hub id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--box-threshold", type=float, default=0.35)
    parser.add_argument("--text-threshold", type=float, default=0.25)
    parser.add_argument("--redetect-every-n", type=int, default=30)
    parser.add_argument("--segment-every-k", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except ValueError as error:  # bad input, option or checkpoint (ModelLoadError is one)
        print(f"hamster-perceive: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"frames": len(result["frames"]), "json": result["json"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
