"""Path and mask metrics on cases small enough to compute by hand."""
import numpy as np
import pytest

from hamster_core.path2d import Path2D
from hamster_core.path_metrics import (compare_paths, discrete_frechet, dtw_distance, gripper_event_agreement,
                                       mask_iou)


def test_frechet_of_parallel_segments_is_their_offset():
    a = [[0, 0], [1, 0], [2, 0]]
    b = [[0, 1], [1, 1], [2, 1]]
    assert discrete_frechet(a, b) == pytest.approx(1.0)


def test_frechet_is_the_leash_not_the_average():
    # a repeated point costs nothing: the walker on b waits
    a = [[0, 0], [3, 0]]
    b = [[0, 0], [0, 0], [3, 0]]
    assert discrete_frechet(a, b) == pytest.approx(0.0)
    # b's detour point (1, 4) pairs with a's nearer point (0, 0) at best
    assert discrete_frechet([[0, 0], [3, 0]], [[0, 0], [1, 4], [3, 0]]) == pytest.approx(np.hypot(1, 4))


def test_dtw_sum_and_mean():
    a = [[0, 0], [1, 0], [2, 0]]
    b = [[0, 0], [2, 0]]
    # best warping: (0,0)-(0,0)=0, (1,0)-(0,0) or (2,0) =1, (2,0)-(2,0)=0 -> sum 1 over 3 pairs
    assert dtw_distance(a, b, normalize=False) == pytest.approx(1.0)
    assert dtw_distance(a, b) == pytest.approx(1.0 / 3)
    assert dtw_distance(a, a) == 0.0


def test_gripper_events_and_compare_paths():
    reference = Path2D([[0.1, 0.1], [0.5, 0.5], [0.9, 0.1]], [0, 1, 0])
    shifted = Path2D([[0.1, 0.2], [0.5, 0.6], [0.9, 0.2]], [0, 1, 0])
    never_closes = Path2D([[0.1, 0.1], [0.9, 0.1]])
    events = gripper_event_agreement(shifted, reference)
    assert events["same_sequence"] and events["event_errors"] == pytest.approx([0.1, 0.1])
    assert gripper_event_agreement(never_closes, reference)["matched_fraction"] == 0.0
    metrics = compare_paths(shifted, reference)
    assert metrics["frechet"] == pytest.approx(0.1)
    assert 0.0 < metrics["dtw"] <= 0.1  # warping may pair points diagonally closer than the offset
    assert metrics["start_error"] == pytest.approx(0.1) and metrics["end_error"] == pytest.approx(0.1)


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True          # 4 pixels
    b[1:3, 1:3] = True        # 4 pixels, 1 shared
    assert mask_iou(a, b) == pytest.approx(1 / 7)
    assert mask_iou(a, a) == 1.0 and mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, np.zeros((3, 3)))
