"""hamster-eval-sim and the variation sets: closed-loop episodes in-process, deterministic under a seed, JSON
results and a plot; each variation set changes what it says and nothing else."""
import json

import numpy as np
import pytest

from hamster_core.policies.rvt2 import RVT2Policy
from hamster_apps.eval_sim import ModelSpec, evaluate, main
from hamster_sim.scene import DEFAULT_PALETTE
from hamster_sim.variations import NOVEL_PALETTE, VARIATIONS, held_out_combination, scene_for, variation
from hamster_sim.world import FrankaWorld

TINY = dict(num_points=128, image_size=16, patch_size=4, dim=16, depth=1, heads=2, rotation_bins=12)


def test_variation_sets_are_deterministic_and_partition_the_colour_pairs():
    for name in VARIATIONS:
        assert scene_for(name, 5) == scene_for(name, 5)
    for seed in range(20):
        base, held = scene_for("base", seed), scene_for("unseen_combos", seed)
        assert not held_out_combination(base.target_object.color, base.target_container.color)
        assert held_out_combination(held.target_object.color, held.target_container.color)
        colors = {item.color for item in scene_for("colors", seed).objects + scene_for("colors", seed).containers}
        assert colors <= set(NOVEL_PALETTE) and not colors & set(DEFAULT_PALETTE)
        assert len(scene_for("distractors", seed).objects) == 5
        small = scene_for("sizes", seed).target_object
        assert small.size[0] < 0.02                                 # half side or radius
    assert scene_for("camera_shift", 3) == scene_for("base", 3)     # same scenes, other camera
    with pytest.raises(ValueError, match="unknown variation set 'fog'"):
        variation("fog")


def test_world_appearance_options_are_validated():
    with pytest.raises(ValueError, match="table_rgba"):
        FrankaWorld(scene_for("base", 0), table_rgba=(1, 0, 0))
    with pytest.raises(ValueError, match="light_rgb"):
        FrankaWorld(scene_for("base", 0), light_rgb=(3.0, 1.0, 1.0))


def test_model_specs_are_parsed_and_checked(tmp_path):
    assert ModelSpec.parse("a=rvt2:/x/final") == ModelSpec("a", "rvt2", "/x/final")
    assert ModelSpec.parse("pf=path_follower") == ModelSpec("pf", "path_follower", "")
    with pytest.raises(ValueError, match="NAME=POLICY"):
        ModelSpec.parse("rvt2")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        ModelSpec.parse("a=rvt2").create()
    with pytest.raises(ValueError, match="unknown"):
        evaluate([ModelSpec("pf", "path_follower")], ["fog"], 1, 0)
    # deployment settings after '?': the release gate off, to compare with it on
    assert ModelSpec.parse("k=rvt2:/x?release_confirmations=1,release_threshold=0.5") == ModelSpec(
        "k", "rvt2", "/x", (("release_confirmations", 1), ("release_threshold", 0.5)))
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        ModelSpec.parse("k=rvt2:/x?release_confirmations")
    with pytest.raises(ValueError, match="takes no checkpoint or settings"):
        ModelSpec.parse("pf=path_follower?release_threshold=0.5").create()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(RVT2Policy(**TINY, conditioning="path_channels").save_pretrained(tmp_path_factory.mktemp("ckpt")))


@pytest.mark.slow  # four closed-loop simulated episodes
def test_evaluation_is_deterministic_under_a_seed(checkpoint):
    models = [ModelSpec("tiny", "rvt2", checkpoint)]
    first = evaluate(models, ["base"], 1, 1000, timeout_sec=6.0, max_keyframes=2, progress=False)
    second = evaluate(models, ["base"], 1, 1000, timeout_sec=6.0, max_keyframes=2, progress=False)
    a, b = first["results"]["tiny"]["base"], second["results"]["tiny"]["base"]
    assert a["episode_results"] == b["episode_results"]
    record = a["episode_results"][0]
    assert record["keyframes"] >= 1 and record["scene_seed"] == scene_for("base", 1000).seed
    assert first["models"]["tiny"] == {"policy": "rvt2", "checkpoint": checkpoint, "conditioning": "path_channels",
                                       "parameters": RVT2Policy.from_pretrained(checkpoint).num_parameters()}


@pytest.mark.slow  # six closed-loop simulated episodes through the command
def test_eval_command_writes_results_and_a_plot(checkpoint, tmp_path):
    code = main(["--model", f"tiny={'rvt2'}:{checkpoint}", "--model", "follower=path_follower", "--sets", "base",
                 "camera_shift", "--episodes", "1", "--seed", "1001", "--timeout", "25", "--max-keyframes", "1",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["sets"] == ["base", "camera_shift"] and set(report["results"]) == {"tiny", "follower"}
    for model in ("tiny", "follower"):
        for name in ("base", "camera_shift"):
            cell = report["results"][model][name]
            assert cell["episodes"] == 1 and cell["success_rate"] == cell["successes"]
    # The training-free follower with the oracle path is the reference: it must solve a plain episode.
    assert report["results"]["follower"]["base"]["successes"] == 1
    table = (tmp_path / "results.md").read_text().splitlines()
    shifted = report['results']['follower']['camera_shift']['successes']
    assert table[0].endswith("| base | camera_shift | held-out |") and table[3].startswith("| follower | path_follower |")
    assert table[3].endswith(f"| {report['results']['follower']['base']['successes']}/1 | {shifted}/1 | {shifted}/1 |")
    png = (tmp_path / "success.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert np.isfinite(report["wall_seconds"])

    # Runs of other models on the same scenes (one process per core) merge into one table; other scenes do not.
    other = tmp_path / "other"
    assert main(["--model", "follower_2=path_follower", "--sets", "base", "camera_shift", "--episodes", "1",
                 "--seed", "1001", "--timeout", "25", "--out", str(other), "--no-progress"]) == 0
    merged = tmp_path / "merged"
    assert main(["--merge", str(tmp_path), str(other), "--out", str(merged)]) == 0
    combined = json.loads((merged / "results.json").read_text())
    assert list(combined["models"]) == ["tiny", "follower", "follower_2"] and len(combined["merged_from"]) == 2
    assert combined["results"]["follower_2"] == json.loads((other / "results.json").read_text())["results"][
        "follower_2"]
    assert len((merged / "results.md").read_text().splitlines()) == 5
    # A model evaluated on fewer sets joins the table with "-" where it has no result.
    fewer = tmp_path / "fewer"
    assert main(["--model", "follower_3=path_follower", "--sets", "base", "--episodes", "1", "--seed", "1001",
                 "--timeout", "25", "--out", str(fewer), "--no-progress"]) == 0
    assert main(["--merge", str(other), str(fewer), "--out", str(merged)]) == 0
    assert json.loads((merged / "results.json").read_text())["sets"] == ["base", "camera_shift"]
    row = (merged / "results.md").read_text().splitlines()[3]
    assert row.startswith("| follower_3 |") and row.endswith("/1 | - | - |")
    elsewhere = json.loads((other / "results.json").read_text()) | {"seed": 7}
    (other / "results.json").write_text(json.dumps(elsewhere))
    with pytest.raises(SystemExit):
        main(["--merge", str(tmp_path), str(other), "--out", str(merged)])
    with pytest.raises(SystemExit):  # twice the same model
        main(["--merge", str(tmp_path), str(tmp_path), "--out", str(merged)])
