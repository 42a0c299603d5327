"""hamster-perceive: the perception pipeline (detect -> track -> segment) on an image, a folder of images or a
video, without ROS. Writes one annotated image per frame and perception.json (per frame: boxes, scores, mask
areas, per-stage milliseconds).

  hamster-perceive frames/ --instruction "pick up the red cube and put it in the blue bowl" \\
      --detector-checkpoint IDEA-Research/grounding-dino-tiny --segmenter-checkpoint facebook/sam-vit-base --out out/
  hamster-perceive clip.mp4 --queries "target_object=red cube" --detector owlv2 --detector-checkpoint ...

Exit codes: 0 done, 2 bad arguments or input (unreadable image/video, bad checkpoint, bad query).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class InputError(ValueError):
    pass


def parse_queries(entries: list[str], instruction: str | None) -> dict[str, str]:
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
    if not queries:
        raise ValueError("nothing to look for: give --queries label=phrase ... or --instruction")
    return queries


def frames(source: Path):
    """(name, RGB uint8) for an image, every image in a folder (sorted by name), or every video frame."""
    import cv2
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {source}")
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        files = [source]
    elif source.is_file():
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise InputError(f"cannot open {source} as an image or a video")
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"frame_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise InputError(f"video {source} has no readable frames")
        return
    else:
        raise InputError(f"input {source} does not exist")
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read image {path}")
        yield path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run(args) -> dict:
    import cv2
    from hamster_core.perception.backend import PerceptionFrame
    from hamster_core.perception.pipeline import annotate, build_pipeline
    queries = parse_queries(args.queries, args.instruction)
    source = frames(args.input)
    first = next(source)  # unreadable input fails before any model loads
    if args.detector == "sim_ground_truth":
        raise ValueError("the sim_ground_truth detector needs the simulator; use grounding_dino or owlv2")
    pipeline = build_pipeline(
        detector=args.detector, detector_checkpoint=args.detector_checkpoint, segmenter=args.segmenter,
        segmenter_checkpoint=args.segmenter_checkpoint, tracker=args.tracker, device=args.device,
        box_threshold=args.box_threshold, text_threshold=args.text_threshold, redetect_every_n=args.redetect_every_n,
        segment_every_k=args.segment_every_k)
    pipeline.set_queries(queries)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (name, rgb) in enumerate(itertools.chain([first], source)):
        output = pipeline.process(PerceptionFrame(float(index), rgb))
        image_path = args.out / f"{name}_annotated.png"
        cv2.imwrite(str(image_path), cv2.cvtColor(annotate(rgb, output.detections), cv2.COLOR_RGB2BGR))
        records.append({
            "frame": name, "index": index, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "detected": output.detected, "detect_reason": output.reason, "segmented": output.segmented,
            "timings_ms": output.timings_ms, "annotated": str(image_path),
            "objects": [{"label": d.label, "phrase": d.phrase, "box_xywh": list(d.box), "score": round(d.score, 4),
                         "mask_area": int(d.mask.sum())} for d in output.detections]})
    result = {"input": str(args.input), "queries": queries, "detector": args.detector,
              "segmenter": args.segmenter, "tracker": args.tracker, "frames": records}
    (args.out / "perception.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="an image, a folder of images, or a video file")
    parser.add_argument("--queries", nargs="*", default=[], metavar="LABEL=PHRASE",
                        help='e.g. "target_object=red cube" "placement_area=blue bowl"')
    parser.add_argument("--instruction", help="a pick-and-place instruction; gives target_object and placement_area")
    parser.add_argument("--out", type=Path, default=Path("perceive_out"), help="folder for the outputs")
    parser.add_argument("--detector", default="grounding_dino", help="grounding_dino | owlv2")
    parser.add_argument("--detector-checkpoint", default="", help="folder (save_pretrained) or hub id")
    parser.add_argument("--segmenter", default="sam", help="sam | sam2 | segment_anything | box")
    parser.add_argument("--segmenter-checkpoint", default="")
    parser.add_argument("--tracker", default="csrt", help="csrt | kcf | mil | none (detect every frame)")
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
    print(json.dumps({"frames": len(result["frames"]), "json": str(args.out / "perception.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
