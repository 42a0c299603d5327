"""The `sam2_video` tracker (transformers Sam2VideoModel, streaming) on a tiny random checkpoint built offline:
loading, streaming frame by frame, and the session's state (bounded memory, restart, bad frames). Its boxes are
meaningless with random weights; their form, the bookkeeping and the pipeline around them are not."""
import inspect

import numpy as np
import pytest

from hamster_core.perception.backend import PerceptionFrame
from hamster_core.perception.pipeline import build_pipeline
from hamster_core.perception.stages import TRACKERS, ModelLoadError
from hamster_core.perception.track_state import TrackState
from hamster_core.tiny_checkpoints.perception import build_sam2, build_sam2_video

H, W = 120, 160


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(build_sam2_video(tmp_path_factory.mktemp("tiny")))


def frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def test_the_box_prompt_is_encoded_as_the_processor_does():
    """Sam2VideoProcessor (not usable here: it needs torchvision) turns a box into two corner points labelled
    2 and 3 in model-input pixels; the tracker builds the session the same way."""
    from transformers import Sam2VideoProcessor
    source = inspect.getsource(Sam2VideoProcessor.process_new_points_or_boxes_for_video_frame)
    assert "torch.tensor([2, 3], dtype=torch.int32)" in source and "reshape(1, -1, 2, 2)" in source
    assert "session.add_point_inputs(obj_idx, frame_idx, point_inputs)" in source.replace("inference_", "")


def test_streams_frame_by_frame_with_bounded_memory(checkpoint):
    tracker = TRACKERS.create("sam2_video", checkpoint=checkpoint)
    stream = frames(40)
    tracker.start(stream[0], (20.0, 30.0, 60.0, 70.0))
    updates = [tracker.update(rgb) for rgb in stream[1:]]
    assert tracker.frame_index == 39 and tracker.forward_ms > 0
    for update in updates:
        assert 0.0 <= update.confidence <= 1.0
        if not update.lost:
            x0, y0, x1, y1 = update.box
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    # The session keeps the prompted frame and the model's memory span, not the whole stream.
    assert tracker.stored_frames <= tracker.keep_frames + 2 < 39
    assert len(tracker.session.processed_frames) == 1
    tracker.start(stream[5], (10.0, 10.0, 50.0, 40.0))      # a new prompt forgets the old stream
    assert tracker.frame_index == 0 and tracker.stored_frames == 1


def test_bad_use_names_the_problem(checkpoint, tmp_path):
    tracker = TRACKERS.create("sam2_video", checkpoint=checkpoint)
    with pytest.raises(RuntimeError, match="before start"):
        tracker.update(frames(1)[0])
    tracker.start(frames(1)[0], (20.0, 30.0, 60.0, 70.0))
    with pytest.raises(ValueError, match="differs from the tracked stream"):
        tracker.update(np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        tracker.start(frames(1)[0], (20.0, 30.0, 20.5, 70.0))
    with pytest.raises(ValueError, match="keep_frames"):
        TRACKERS.create("sam2_video", checkpoint=checkpoint, keep_frames=2)
    with pytest.raises(ModelLoadError, match="holds a 'sam2' model"):
        TRACKERS.create("sam2_video", checkpoint=str(build_sam2(tmp_path)))
    with pytest.raises(ModelLoadError, match="does not exist"):
        TRACKERS.create("sam2_video", checkpoint=str(tmp_path / "missing"))


def test_chosen_by_parameter_in_the_pipeline(checkpoint):
    with pytest.raises(ValueError, match="sam2_video needs a checkpoint"):
        build_pipeline(detector="none", segmenter="box", tracker="sam2_video")
    pipeline = build_pipeline(detector="none", segmenter="box", tracker="sam2_video", tracker_checkpoint=checkpoint)
    pipeline.set_queries({"target_object": "red cube", "placement_area": "blue bowl"})
    stream = frames(6, seed=3)
    first = pipeline.start_tracks(PerceptionFrame(0.0, stream[0]), {"target_object": (20, 30, 60, 70),
                                                                   "placement_area": (90, 60, 150, 110)})
    assert set(first.states.values()) == {TrackState.DETECTED}
    for index, rgb in enumerate(stream[1:], 1):
        output = pipeline.process(PerceptionFrame(float(index), rgb))
        assert set(output.states) == {"target_object", "placement_area"}
        # The video model runs on every frame, also while its object is occluded (its memory carries it
        # through), and its forward passes are counted as such.
        assert output.timings_ms["forward"] > 0
    assert pipeline._tracks["target_object"].tracker.frame_index == len(stream) - 1
