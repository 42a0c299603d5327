"""Trackers on synthetic scenes with known ground truth, and the pipeline's schedule (detect, track, re-detect,
segment every k frames) with the simulator-segmentation detector."""
import numpy as np
import pytest

from hamster_sim.ground_truth import encode_scene_payload
from hamster_sim.scene import sample_scene
from hamster_core.perception.backend import PERCEPTION_BACKENDS, PerceptionFrame
from hamster_core.perception.pipeline import PerceptionPipeline, build_pipeline
from hamster_core.perception.stages import (DETECTORS, SEGMENTERS, TRACKERS, box_iou, carry_mask, mask_box)
from hamster_core.perception.track_state import StateConfig

H, W = 240, 320
SIZE = 36


def background(seed=0):
    # Smooth texture: trackers need structure around the object, not white noise.
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 200, (H // 8, W // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), np.uint8))


def object_patch():
    patch = np.zeros((SIZE, SIZE, 3), np.uint8)
    patch[...] = (220, 40, 40)
    patch[8:28, 8:28] = (250, 230, 40)
    patch[14:22, :] = (30, 30, 200)
    return patch


def scene_frames(n=40, occlude=(15, 19), vanish_at=None):
    """A patterned square moving right/down; frames in `occlude` have a grey bar over half of it; from
    `vanish_at` on it is gone. Yields (rgb, ground-truth box or None)."""
    base, patch = background(), object_patch()
    for t in range(n):
        rgb = base.copy()
        x, y = 40 + 4 * t, 60 + 2 * t
        box = (float(x), float(y), float(x + SIZE), float(y + SIZE))
        if vanish_at is not None and t >= vanish_at:
            yield rgb, None
            continue
        rgb[y:y + SIZE, x:x + SIZE] = patch
        if occlude[0] <= t < occlude[1]:
            rgb[y - 10:y + SIZE + 10, x + SIZE // 2:x + SIZE + 10] = 128
        yield rgb, box


def run_tracker(name, frames):
    tracker = TRACKERS.create(name)
    tracker.start(frames[0][0], frames[0][1])
    return [(tracker.update(rgb), truth) for rgb, truth in frames[1:]]


def test_csrt_follows_a_moving_object_through_a_brief_occlusion():
    results = run_tracker("csrt", list(scene_frames()))
    ious = [box_iou(update.box, truth) for update, truth in results]
    assert min(ious) > 0.6, ious
    assert not any(update.lost for update, _ in results)


@pytest.mark.parametrize("name", ["csrt", "kcf", pytest.param("mil", marks=pytest.mark.slow)])  # mil: ~2 s each
def test_tracker_is_never_confidently_wrong_through_an_occlusion(name):
    """KCF gives up under the occluder and MIL's box drifts there; both say so (the pipeline then re-detects)."""
    results = run_tracker(name, list(scene_frames()))
    for index, (update, truth) in enumerate(results):
        assert update.lost or box_iou(update.box, truth) > 0.5, (index, update)
    assert not any(update.lost for update, _ in results[:12])   # before the occluder


@pytest.mark.parametrize("name", ["csrt", "kcf", pytest.param("mil", marks=pytest.mark.slow)])  # mil: ~2 s each
def test_tracker_reports_loss_when_the_object_is_gone_for_good(name):
    frames = list(scene_frames(n=30, occlude=(0, 0), vanish_at=10))
    tracker = TRACKERS.create(name)
    tracker.start(frames[0][0], frames[0][1])
    updates = [tracker.update(rgb) for rgb, _ in frames[1:]]
    assert not any(u.lost for u in updates[:8])
    assert all(u.lost for u in updates[-10:]), [(u.lost, round(u.confidence, 2)) for u in updates]


def test_tracker_arguments_are_validated():
    with pytest.raises(ValueError, match="min_confidence.*2"):
        TRACKERS.create("csrt", min_confidence=2)
    with pytest.raises(ValueError, match="unknown tracker 'medianflow'"):
        TRACKERS.create("medianflow")
    with pytest.raises(ValueError, match="too small"):
        TRACKERS.create("kcf").start(background(), (10, 10, 10.5, 30))


# --------------------------------------------------------------------------------------- pipeline (no models)

SCENE = sample_scene(3)
IDS = {obj.name: i + 1 for i, obj in enumerate(SCENE.objects)} | \
      {c.name: len(SCENE.objects) + i + 1 for i, c in enumerate(SCENE.containers)}
PAYLOAD = encode_scene_payload(SCENE, IDS)
QUERIES = {"target_object": SCENE.target, "placement_area": SCENE.container}


def sim_frames(n, vanish_at=None):
    """Frames with the simulator-style segmentation: the target moving, the container still."""
    for t, (rgb, box) in enumerate(scene_frames(n, occlude=(0, 0), vanish_at=vanish_at)):
        segmentation = np.zeros((H, W), np.int32)
        if box is not None:
            x0, y0, x1, y1 = (int(v) for v in box)
            segmentation[y0:y1, x0:x1] = IDS[SCENE.target]
        rgb[170:230, 220:300] = (40, 200, 60)
        segmentation[170:230, 220:300] = IDS[SCENE.container]
        yield PerceptionFrame(float(t), rgb, segmentation, PAYLOAD), box


def make_pipeline(**overrides):
    config = dict(detector=DETECTORS.create("sim_ground_truth"), segmenter=SEGMENTERS.create("box"),
                  tracker_factory=lambda: TRACKERS.create("csrt"), redetect_every_n=0, segment_every_k=1)
    config.update(overrides)
    pipeline = PerceptionPipeline(**config)
    pipeline.set_queries(QUERIES)
    return pipeline


def test_detects_on_new_queries_then_tracks_and_redetects_every_n():
    pipeline = make_pipeline(redetect_every_n=5)
    reasons = [pipeline.process(frame).reason for frame, _ in sim_frames(12)]
    assert reasons == ["new_queries", "", "", "", "", "every_n", "", "", "", "", "every_n", ""]
    pipeline.set_queries(QUERIES)
    pipeline.request_redetect()   # new queries already pending: their reason stays
    frames = list(sim_frames(3))
    assert pipeline.process(frames[0][0]).reason == "new_queries"
    pipeline.request_redetect()
    assert [pipeline.process(f).reason for f, _ in frames[1:]] == ["requested", ""]


def test_tracked_boxes_follow_the_object_and_masks_match_labels():
    pipeline = make_pipeline()
    for frame, truth in sim_frames(20):
        output = pipeline.process(frame)
        found = {d.label: d for d in output.detections}
        assert set(found) == set(QUERIES)
        x, y, w, h = found["target_object"].box
        assert box_iou((x, y, x + w, y + h), truth) > 0.7
        assert found["target_object"].phrase == SCENE.target
        assert set(output.timings_ms) == {"detect", "track", "segment", "forward", "total"}


def test_vanished_object_goes_occluded_then_lost_and_the_detector_runs_at_a_bounded_rate():
    pipeline = make_pipeline(lost_redetect_every_n=5, state_config=StateConfig(occluded_frames=4))
    outputs = [pipeline.process(frame) for frame, _ in sim_frames(30, vanish_at=10)]
    states = [o.states["target_object"].value for o in outputs]
    assert states[0] == "detected" and set(states[1:10]) == {"tracked"}
    assert states[10:14] == ["occluded"] * 4 and set(states[14:]) == {"lost"}
    assert all(o.boxes["target_object"] is None for o in outputs[10:])
    assert all({d.label for d in o.detections} == {"placement_area"} for o in outputs[10:])
    # Lost from frame 14: the detector runs there and then every 5th frame, not on every frame.
    assert [i for i, o in enumerate(outputs) if o.detected] == [0, 14, 19, 24, 29]
    assert {o.reason for o in outputs[14:] if o.detected} == {"lost"}
    # The placement area's healthy track is never replaced by those detections.
    assert {o.states["placement_area"].value for o in outputs[1:]} == {"tracked"}


def test_segment_every_k_carries_masks_with_the_boxes():
    pipeline = make_pipeline(segment_every_k=4, segmenter=SEGMENTERS.create("box"))
    outputs = [pipeline.process(frame) for frame, _ in sim_frames(9)]
    assert [o.segmented for o in outputs] == [True, False, False, False, True, False, False, False, True]
    for output in outputs:
        target = next(d for d in output.detections if d.label == "target_object")
        x, y, w, h = target.box
        carried = mask_box(target.mask)
        assert box_iou(carried, (x, y, x + w, y + h)) > 0.85   # the mask moved with its box


def test_carry_mask_moves_and_scales():
    mask = np.zeros((100, 100), bool)
    mask[10:20, 10:30] = True
    moved = carry_mask(mask, (10, 10, 30, 20), (50, 60, 90, 80))
    assert mask_box(moved) == (50.0, 60.0, 90.0, 80.0)


def test_bad_configuration_names_the_value():
    with pytest.raises(ValueError, match="redetect_every_n.*-1"):
        make_pipeline(redetect_every_n=-1)
    with pytest.raises(ValueError, match="segment_every_k.*0"):
        make_pipeline(segment_every_k=0)
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        build_pipeline(detector="yolo")
    with pytest.raises(ValueError, match="unknown segmenter 'sam3'"):
        build_pipeline(detector="sim_ground_truth", segmenter="sam3")
    with pytest.raises(ValueError, match="unknown tracker 'boosting'"):
        build_pipeline(detector="sim_ground_truth", segmenter="box", tracker="boosting")
    with pytest.raises(ValueError, match="grounding_dino needs a checkpoint"):
        build_pipeline(detector="grounding_dino", segmenter="box")


def test_pipeline_backend_reports_stage_timings_and_redetects_on_request():
    backend = PERCEPTION_BACKENDS.create("pipeline", detector="sim_ground_truth", segmenter="box", tracker="kcf")
    assert backend.uses_segmentation
    backend.set_queries(QUERIES)
    frames = [frame for frame, _ in sim_frames(3)]
    assert {d.label for d in backend.process(frames[0])} == set(QUERIES)
    diagnostics = backend.diagnostics()
    assert diagnostics["detect_reason"] == "new_queries" and float(diagnostics["detect_ms"]) >= 0
    assert {"track_ms", "segment_ms", "forward_ms", "total_ms"} <= set(diagnostics)
    assert backend.request_redetect()
    backend.process(frames[1])
    assert backend.diagnostics()["detect_reason"] == "requested"
    assert not PERCEPTION_BACKENDS.create("sim_ground_truth").request_redetect()
