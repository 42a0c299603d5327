"""hamster-perceive on synthetic images and a video, with tiny random checkpoints; bad input exits non-zero."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hamster_core.tiny_checkpoints.perception import build_grounding_dino, build_sam
from hamster_apps.perceive import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return ["--detector-checkpoint", str(build_grounding_dino(root)), "--segmenter-checkpoint", str(build_sam(root)),
            "--box-threshold", "0", "--text-threshold", "0"]


def synthetic(i):
    rgb = np.full((120, 160, 3), 190, np.uint8)
    cv2.rectangle(rgb, (20 + 6 * i, 30), (60 + 6 * i, 70), (200, 30, 30), -1)
    return rgb


@pytest.mark.slow  # the command end to end with its tiny models (seconds); bad input is checked in make test-fast
def test_folder_of_images_gives_annotated_images_and_json(tmp_path, models, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(synthetic(i), cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    assert main([str(folder), "--instruction", "pick up the red cube and put it in the blue bowl", "--out", str(out),
                 "--segment-every-k", "2", *models]) == 0
    result = json.loads((out / "perception.json").read_text())
    assert result["queries"] == {"target_object": "red cube", "placement_area": "blue bowl"}
    frames = result["frames"]
    assert [f["frame"] for f in frames] == ["00", "01", "02"]
    assert frames[0]["detect_reason"] == "new_queries"
    # Masks are segmented on every detection and every 2nd frame (random detectors may re-detect any time).
    assert frames[0]["segmented"] and frames[2]["segmented"]
    assert all(f["segmented"] for f in frames if f["detected"])
    for frame in frames:
        assert set(frame["timings_ms"]) == {"detect", "track", "segment", "forward", "total"}
        assert cv2.imread(frame["annotated"]).shape == (120, 160, 3)
        assert set(frame["objects"]) == set(result["queries"])
        for obj in frame["objects"].values():
            assert obj["state"] in ("detected", "tracked", "occluded", "lost")
            if obj["box"] is None:
                assert obj["state"] in ("occluded", "lost")
                continue
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
            assert 0 < obj["mask_area"] <= 160 * 120
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 3


@pytest.mark.slow  # the command end to end with its tiny models
def test_video_file(tmp_path, models):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(4):
        writer.write(cv2.cvtColor(synthetic(i), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert main([str(video), "--queries", "target_object=red cube", "--tracker", "kcf", "--out", str(out),
                 *models]) == 0
    result = json.loads((out / "perception.json").read_text())
    assert len(result["frames"]) == 4 and result["tracker"] == "kcf"


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--queries", "a=b"], "does not exist"),
    (["{bad_image}", "--queries", "a=b"], "cannot open"),
    (["{folder}", "--queries", "a=b"], "no images"),
    (["{folder}", "--queries", "nonsense"], "label=phrase"),
    (["{folder}"], "nothing to look for"),
    (["{folder}", "--instruction", "dance"], "instruction"),
    (["{mixed}", "--queries", "a=b"], "every frame of a clip must have the same size"),
    (["{thin}", "--queries", "a=b"], "at least 32 px"),
    (["{good}", "--queries", "a=b", "--out", "{file}"], "is a file, not a folder"),
    (["{good}", "--queries", "a=b", "--out", "{file}/below"], "cannot be created"),
    (["{good}", "--queries", "a=b", "--masks", "{file}"], "--masks"),
    (["{good}", "--init-boxes", "a=1,2,3"], "label=x0,y0,x1,y1"),
    (["{good}", "--init-boxes", "a=30,20,10,40"], "x0 < x1"),
    (["{good}", "--init-boxes", "a=10,10,500,40"], "outside the first frame (160x120)"),
    (["{good}", "--queries", "a=b", "--detector", "none"], "--detector none needs --init-boxes"),
    (["{good}", "--init-boxes", "a=10,10,50,40", "--detector", "none", "--tracker", "none"], "needs a tracker"),
    (["{good}", "--queries", "a=b", "--detector-checkpoint", "{missing}"], "does not exist (a local path"),
    (["{good}", "--queries", "a=b", "--detector-checkpoint", "./models/gd"], "does not exist (a local path"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    folder, mixed = tmp_path / "empty", tmp_path / "mixed"
    folder.mkdir()
    mixed.mkdir()
    cv2.imwrite(str(mixed / "0.png"), synthetic(0))
    cv2.imwrite(str(mixed / "1.png"), cv2.resize(synthetic(1), (200, 120)))
    cv2.imwrite(str(tmp_path / "thin.png"), np.zeros((4, 640, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "good.png"), synthetic(0))
    bad_image = tmp_path / "broken.xyz"
    bad_image.write_bytes(b"not an image")
    (tmp_path / "file").write_text("a file")
    paths = {"missing": tmp_path / "nope.png", "bad_image": bad_image, "folder": folder, "mixed": mixed,
             "thin": tmp_path / "thin.png", "good": tmp_path / "good.png", "file": tmp_path / "file"}
    argv = [a.format(**paths) for a in args] + ["--segmenter", "box"]
    if "--detector-checkpoint" not in argv:
        argv += ["--detector-checkpoint", str(tmp_path / "never_loaded")]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bad_checkpoint_exits_2_naming_it(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), synthetic(0))
    assert main([str(tmp_path / "a.png"), "--queries", "a=b", "--detector-checkpoint", str(tmp_path / "nothing"),
                 "--segmenter", "box"]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err


def test_console_script_is_installed():
    process = subprocess.run([sys.executable, "-m", "hamster_apps.perceive", "--help"], capture_output=True,
                             text=True, timeout=60)
    assert process.returncode == 0 and "--detector-checkpoint" in process.stdout
