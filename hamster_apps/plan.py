"""hamster-plan: ask a VLM for a HAMSTER path on one image, without ROS. Same core as the VLM node
(`hamster_vlm_node.planner`): query -> strict parse -> optional RDP and resampling.

    hamster-plan --image IMG --instruction TEXT [--backend openai|transformers] [backend options]
                 [--out overlay.png] [--json path.json] [--channels channels.npy]

Backend options are the node's `<backend>.<name>` parameters written as flags (`--base-url`, `--model`,
`--checkpoint`, `--max-new-tokens`, ...); `hamster-plan --help` lists them. Prints the path as one JSON object.

`--gripper-xy X,Y` (normalized image position of the gripper) adds the prompt's gripper-position line, which the
node computes from the camera and the end-effector pose.

Exit status: 0 path found; 2 bad arguments or options (an empty instruction, a checkpoint that cannot be loaded);
3 the backend gave no answer; 4 the answer is not a valid path. On any failure the reason goes to stderr (a
rejected answer cut to a few hundred characters) and no file is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CLI_BACKENDS = ("openai", "transformers")  # the oracle needs the simulator's ground truth
EXIT_USAGE, EXIT_QUERY, EXIT_PARSE = 2, 3, 4


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _gripper_xy(text: str) -> tuple[float, float]:
    try:
        x, y = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise argparse.ArgumentTypeError(f"X and Y must be normalized image coordinates in [0, 1], got {text!r}")
    return x, y


def _defaults_text(defaults: dict[str, object]) -> str:
    """`0.0`, or `openai: 0.0, transformers: 1.0` when the backends differ."""
    values = list(defaults.values())
    if all(value == values[0] for value in values):
        return repr(values[0])
    return ", ".join(f"{backend}: {value!r}" for backend, value in defaults.items())


def build_parser() -> argparse.ArgumentParser:
    from hamster_vlm_node.planner import PLANNER_PARAMETERS, backend_parameters

    parser = argparse.ArgumentParser(prog="hamster-plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True, help="RGB image (any format OpenCV reads)")
    parser.add_argument("--instruction", required=True)
    parser.add_argument("--backend", choices=CLI_BACKENDS, default="openai")
    parser.add_argument("--out", type=Path, help="write the HAMSTER-style overlay here (PNG/JPEG)")
    parser.add_argument("--json", type=Path, help="write the result JSON here as well")
    parser.add_argument("--channels", type=Path, help="write the path channels (H, W, 3) float32 as .npy")
    parser.add_argument("--gripper-xy", type=_gripper_xy, metavar="X,Y",
                        help="the gripper's normalized image position: adds the prompt's gripper-position line")
    for name, (default, description) in PLANNER_PARAMETERS.items():
        parser.add_argument(_flag(name), type=type(default), default=default, help=description)
    options = parser.add_argument_group("backend options (default: the backend's own)")
    owners: dict[str, dict[str, object]] = {}  # option -> {backend: default}
    descriptions: dict[str, str] = {}
    for backend in CLI_BACKENDS:
        for parameter in backend_parameters(backend):
            if parameter.name not in PLANNER_PARAMETERS:
                owners.setdefault(parameter.name, {})[backend] = parameter.default
                descriptions.setdefault(parameter.name, parameter.description)
    for name, defaults in owners.items():
        default = next(iter(defaults.values()))
        kind = _bool if isinstance(default, bool) else type(default)
        options.add_argument(_flag(name), dest=f"option_{name}", type=kind, default=None, metavar=name.upper(),
                             help=f"[{'/'.join(defaults)}] {descriptions[name]} (default: {_defaults_text(defaults)})")
    return parser


def _config(args, parser) -> dict:
    from hamster_vlm_node.planner import PLANNER_PARAMETERS, backend_parameters

    known = {parameter.name for parameter in backend_parameters(args.backend)}
    config = {"backend": args.backend, **{name: getattr(args, name) for name in PLANNER_PARAMETERS}}
    for key, value in vars(args).items():
        if not key.startswith("option_") or value is None:
            continue
        name = key[len("option_"):]
        if name not in known:
            parser.error(f"{_flag(name)} is not an option of the {args.backend} backend")
        config[f"{args.backend}.{name}"] = value
    return config


def main(argv=None) -> int:
    import cv2
    import numpy as np

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.instruction.strip():
        parser.error("--instruction is empty: say what the robot should do")
    if args.option_gripper_position and args.gripper_xy is None:
        parser.error("--gripper-position true needs --gripper-xy X,Y: without a camera and robot pose the CLI "
                     "cannot tell where the gripper is")
    if args.gripper_xy is not None:
        args.option_gripper_position = True
    config = _config(args, parser)
    bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"hamster-plan: cannot read an image from {args.image}", file=sys.stderr)
        return EXIT_USAGE
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    from hamster_core.drawing import PATH_CHANNELS, draw_path, draw_path_channels
    from hamster_core.vlm import VlmRequest, excerpt
    from hamster_vlm_node.planner import PlanError, planner_from_config

    if args.backend == "transformers":  # stderr carries the outcome only, not a loading progress bar
        from transformers.utils import logging as transformers_logging
        transformers_logging.disable_progress_bar()
    try:
        planner = planner_from_config(config)
    except ValueError as error:
        print(f"hamster-plan: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = planner.plan(VlmRequest(image=image, instruction=args.instruction, gripper_xy=args.gripper_xy))
    except PlanError as error:
        print(f"hamster-plan: {error.stage} failed: {error}", file=sys.stderr)
        if error.answer is not None:
            print(f"hamster-plan: the answer was: {excerpt(error.answer)}", file=sys.stderr)
        return EXIT_QUERY if error.stage == "query" else EXIT_PARSE

    height, width = image.shape[:2]
    output = {"instruction": args.instruction, "model_id": planner.model_id, "answer": result.answer,
              "image_size": [width, height],
              "points": np.round(result.path.points, 6).tolist(), "gripper": result.path.gripper.tolist(),
              "pixels": np.round(result.path.to_pixels(width, height), 2).tolist(),
              "parsed_points": len(result.parsed), "timing": result.timing}
    if args.out:
        overlay = draw_path(image, result.path)
        if not cv2.imwrite(str(args.out), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            print(f"hamster-plan: cannot write {args.out}", file=sys.stderr)
            return EXIT_USAGE
        output["overlay"] = str(args.out)
    if args.channels:
        np.save(args.channels, draw_path_channels(height, width, result.path))
        output["channels"] = {"file": str(args.channels), "layout": list(PATH_CHANNELS)}
    text = json.dumps(output)
    if args.json:
        args.json.write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
