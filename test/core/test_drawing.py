"""Path and mask drawing."""
import numpy as np
import pytest

from hamster_core.drawing import GRIPPER_RING_COLORS, MASK_COLORS, draw_masks, draw_path
from hamster_core.path2d import GripperState, Path2D

# Left to right across the middle; closes at the centre and opens at the end.
PICK = Path2D([[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]], [GripperState.OPEN, GripperState.CLOSED, GripperState.OPEN])


def gray_image(size, value=128):
    width, height = size
    return np.full((height, width, 3), value, np.uint8)


def pixel(image, x, y):
    """Colour at normalized (x, y) as ints (R, G, B)."""
    height, width = image.shape[:2]
    return image[int(y * height), int(x * width)].astype(int)


def test_output_is_a_new_uint8_image_and_the_input_is_untouched():
    image = gray_image((320, 240))
    before = image.copy()
    out = draw_path(image, PICK)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out is not image and not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)
    assert np.any(out != image)


def test_path_colour_runs_from_blue_at_the_start_to_red_at_the_end():
    out = draw_path(gray_image((512, 512)), Path2D([[0.1, 0.5], [0.9, 0.5]]))
    near_start, near_end = pixel(out, 0.13, 0.5), pixel(out, 0.87, 0.5)
    assert near_start[2] > 100 and near_start[2] > near_start[0] + 80, near_start
    assert near_end[0] > 100 and near_end[0] > near_end[2] + 80, near_end
    middle = pixel(out, 0.5, 0.5)
    assert middle[1] > 150, middle  # jet is green-ish half way


def ring_pixels(out, point, radius):
    """Colours on the ring around `point` (normalized), straight above and below it, off the horizontal path."""
    height, width = out.shape[:2]
    u, v = int(point[0] * width), int(point[1] * height)
    return [out[v - radius, u].astype(int), out[v + radius - 1, u].astype(int)]


def is_color(observed, expected, tolerance=60):
    return np.all(np.abs(np.asarray(observed) - np.asarray(expected)) <= tolerance)


def test_rings_mark_the_start_and_every_gripper_change():
    # As the reference: the stretch before the first change is drawn closed, so the grasp gets no ring.
    out = draw_path(gray_image((512, 512)), PICK)
    close_color, open_color = GRIPPER_RING_COLORS[GripperState.CLOSED], GRIPPER_RING_COLORS[GripperState.OPEN]
    for color in ring_pixels(out, (0.1, 0.5), 7):
        assert is_color(color, close_color), color
    for color in ring_pixels(out, (0.9, 0.5), 7):  # the release at the end
        assert is_color(color, open_color), color
    for color in ring_pixels(out, (0.5, 0.5), 7):
        assert is_color(color, (128, 128, 128), tolerance=5), color
    # The runtime's own semantics (open before the path) on request: the grasp gets its ring.
    opened = draw_path(gray_image((512, 512)), PICK, start_state=GripperState.OPEN, antialias=True)
    for color in ring_pixels(opened, (0.5, 0.5), 7):
        assert is_color(color, close_color), color
    for point in [(0.1, 0.5), (0.9, 0.5)]:
        for color in ring_pixels(opened, point, 7):
            assert is_color(color, open_color), color
    # No ring where nothing happens.
    plain = draw_path(gray_image((512, 512)), Path2D([[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]]))
    for color in ring_pixels(plain, (0.5, 0.5), 7):
        assert is_color(color, (128, 128, 128), tolerance=5), color


def painted_rows(out, background, x=0.3):
    """Number of rows changed in the column at normalized x (the line's thickness there)."""
    width = out.shape[1]
    column = out[:, int(x * width)].astype(int)
    return int(np.count_nonzero(np.abs(column - background).sum(axis=1) > 30))


def test_line_and_rings_scale_with_image_size():
    small = draw_path(gray_image((512, 512)), PICK)
    large = draw_path(gray_image((1024, 1024)), PICK)
    # Thickness 2 px at 512 and 4 px at 1024 (cv2 draws a thickness-t line t + 1 rows wide).
    assert painted_rows(small, 128) >= 2
    assert painted_rows(large, 128) >= painted_rows(small, 128) + 2
    close_color = GRIPPER_RING_COLORS[GripperState.CLOSED]
    for color in ring_pixels(large, (0.1, 0.5), 14):
        assert is_color(color, close_color), color
    # Below 512 px sizes stay at their 512 px values and lines are at least a pixel wide.
    tiny = draw_path(gray_image((64, 48)), PICK)
    assert painted_rows(tiny, 128) >= 1


def test_single_point_path_gets_just_its_ring_and_bad_input_is_rejected():
    out = draw_path(gray_image((512, 512)), Path2D([[0.5, 0.5]], [GripperState.CLOSED]))
    for color in ring_pixels(out, (0.5, 0.5), 7):
        assert is_color(color, GRIPPER_RING_COLORS[GripperState.CLOSED]), color
    with pytest.raises(ValueError, match="uint8"):
        draw_path(np.zeros((10, 10, 3), np.float32), PICK)
    with pytest.raises(ValueError, match="RGB"):
        draw_path(np.zeros((10, 10), np.uint8), PICK)
    with pytest.raises(ValueError, match="colormap"):
        draw_path(gray_image((64, 64)), PICK, colormap="no-such-map")


def test_masks_are_blended_in_their_colours_and_labelled():
    image = gray_image((200, 100), value=100)
    before = image.copy()
    target = np.zeros((100, 200), bool)
    target[60:90, 120:190] = True
    placement = np.zeros((100, 200), np.uint8)
    placement[5:40, 5:80] = 255
    out = draw_masks(image, {"target_object": target, "placement_area": placement}, alpha=0.5)
    np.testing.assert_array_equal(image, before)
    assert out.shape == image.shape and out.dtype == np.uint8
    expected_target = np.rint(0.5 * 100 + 0.5 * MASK_COLORS[0])
    np.testing.assert_array_equal(out[85, 185], expected_target)  # away from the label in the top-left
    np.testing.assert_array_equal(out[35, 75], np.rint(0.5 * 100 + 0.5 * MASK_COLORS[1]))
    np.testing.assert_array_equal(out[95, 5], [100, 100, 100])  # outside both masks
    label_area = out[60:75, 120:190]
    assert np.any(label_area.min(axis=2) > 200), "white label text expected in the mask's corner"


def test_draw_masks_validates_its_inputs():
    image = gray_image((20, 10))
    with pytest.raises(ValueError, match="shape"):
        draw_masks(image, {"target": np.zeros((5, 5), bool)})
    with pytest.raises(ValueError, match="alpha"):
        draw_masks(image, {}, alpha=1.5)
    np.testing.assert_array_equal(draw_masks(image, {"empty": np.zeros((10, 20), bool)}), image)


# ------------------------------------------------------------------------- the released reference, pixel for pixel

GRIPPER_CLOSE, GRIPPER_OPEN = 0, 1  # the reference's values


def reference_process_answer(answer_body):
    """process_answer of github.com/liyi14/HAMSTER_beta gradio_server_example.py (commit 526a37f5), with the
    list read by a tiny tokenizer instead of eval: [x, y, gripper] per point, the gripper CLOSED until an action."""
    import re
    items = re.findall(r"\(([^)]*)\)|<action>(Close|Open) Gripper</action>", answer_body)
    processed_points, action_flag = [], GRIPPER_CLOSE
    for point, action in items:
        if action:
            action_flag = GRIPPER_CLOSE if action == "Close" else GRIPPER_OPEN
            processed_points[-1][-1] = action_flag
            continue
        x, y = (float(value) for value in point.split(","))
        processed_points.append([x, y, action_flag])
    return processed_points


def reference_draw_lines_on_image_cv(image, points, draw_action=True, num_subdivisions=100):
    """draw_lines_on_image_cv of the same file, line for line, with two guards where it divides by zero (a sample
    on a zero-length segment takes the segment's start) and matplotlib's current colormap lookup."""
    import cv2
    import matplotlib
    height, width, _ = image.shape
    scale_factor = max(min(width, height) / 512.0, 1)
    circle_radius = int(7 * scale_factor)
    circle_thickness = max(1, int(2 * scale_factor))
    line_thickness = max(1, int(2 * scale_factor))
    pixel_points, gripper_status = [], []
    for point in points:
        pixel_points.append((int(point[0] * width), int(point[1] * height)))
        gripper_status.append(int(point[2]))
    for idx, (x, y) in enumerate(pixel_points):
        if draw_action:
            if idx == 0 or gripper_status[idx] != gripper_status[idx - 1]:
                circle_color = (0, 0, 255) if gripper_status[idx] == GRIPPER_CLOSE else (255, 0, 0)
                cv2.circle(image, (x, y), circle_radius, circle_color, circle_thickness)
    pixel_points = np.array(pixel_points, dtype=np.float32)
    distances = [0]
    for i in range(1, len(pixel_points)):
        dist = np.linalg.norm(pixel_points[i] - pixel_points[i - 1])
        distances.append(distances[-1] + dist)
    total_distance = distances[-1]
    sample_distances = np.linspace(0, total_distance, num_subdivisions)
    interpolated_points = []
    idx = 0
    for sd in sample_distances:
        while sd > distances[idx + 1] and idx < len(distances) - 2:
            idx += 1
        span = distances[idx + 1] - distances[idx]
        t = (sd - distances[idx]) / span if span > 0 else 0  # guard
        point = (1 - t) * pixel_points[idx] + t * pixel_points[idx + 1]
        interpolated_points.append(point)
    interpolated_points = np.array(interpolated_points, dtype=np.int32)
    cmap = matplotlib.colormaps["jet"]
    colors = (cmap(np.linspace(0, 1, len(interpolated_points)))[:, :3] * 255).astype(np.uint8)
    for i in range(len(interpolated_points) - 1):
        pt1 = tuple(interpolated_points[i])
        pt2 = tuple(interpolated_points[i + 1])
        color = tuple(int(c) for c in colors[i])
        cv2.line(image, pt1, pt2, color=color, thickness=line_thickness)
    return image


def random_answer(rng, n):
    """Random points with gripper actions that alternate, starting with a close (an explicit "Open" before any
    close leaves no trace in a Path2D: see hamster_core.drawing)."""
    items, action = [], "Close"
    for _ in range(n):
        items.append(f"({rng.uniform(0, 1):.3f}, {rng.uniform(0, 1):.3f})")
        if rng.uniform() < 0.3:
            items.append(f"<action>{action} Gripper</action>")
            action = "Open" if action == "Close" else "Close"
    return "<ans>[" + ", ".join(items) + "]</ans>"


REFERENCE_ANSWERS = [
    # reach, grasp, carry, release: the reference starts closed, so no ring at the grasp
    "<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21), "
    "<action>Open Gripper</action>]</ans>",
    "<ans>[(0.5, 0.5), <action>Close Gripper</action>, (0.9, 0.9)]</ans>",    # an action on the first point
    "<ans>[(0.1, 0.1), (0.1, 0.1), (0.6, 0.4), (0.6, 0.4), (1.0, 1.0)]</ans>",  # repeated points, the far corner
    "<ans>[(0.0, 0.0), (0.999, 0.001), <action>Close Gripper</action>, (0.3, 0.7), <action>Open Gripper</action>, "
    "(0.3, 0.7), <action>Close Gripper</action>]</ans>",
]


@pytest.mark.parametrize("size", [(640, 480), (512, 512), (300, 200), (1280, 720), (97, 1111)])
def test_drawing_matches_the_released_reference_pixel_for_pixel(size):
    from hamster_core.path2d import parse_hamster_answer
    rng = np.random.default_rng(size[0])
    answers = REFERENCE_ANSWERS + [random_answer(rng, int(rng.integers(2, 12))) for _ in range(12)]
    for answer in answers:
        background = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        reference_points = reference_process_answer(answer[len("<ans>["):-len("]</ans>")])
        path = parse_hamster_answer(answer)
        expected = reference_draw_lines_on_image_cv(background.copy(), reference_points)
        drawn = draw_path(background, path)
        mismatch = np.argwhere(np.any(drawn != expected, axis=2))
        assert len(mismatch) == 0, f"{answer}: {len(mismatch)} pixels differ, first at {mismatch[:3].tolist()}"


def test_antialiased_drawing_is_an_option_close_to_the_reference():
    from hamster_core.path2d import parse_hamster_answer
    answer = REFERENCE_ANSWERS[0]
    background = np.full((480, 640, 3), 128, np.uint8)
    expected = reference_draw_lines_on_image_cv(background.copy(), reference_process_answer(answer[6:-7]))
    smooth = draw_path(background, parse_hamster_answer(answer), antialias=True)
    assert np.any(smooth != expected)   # not the same pixels...
    changed = lambda image: np.any(image != 128, axis=2)  # noqa: E731
    overlap = (changed(smooth) & changed(expected)).sum() / changed(expected).sum()
    assert overlap > 0.8                 # ...but the same drawing


# ------------------------------------------------------------------------------------------ path channels

def test_path_channels_hold_progress_and_gripper_state():
    from hamster_core.drawing import (CHANNEL_GRIPPER_CLOSED, CHANNEL_GRIPPER_OPEN, CHANNEL_PROGRESS, PATH_CHANNELS,
                                      draw_path_channels)
    channels = draw_path_channels(100, 200, PICK)
    assert channels.shape == (100, 200, len(PATH_CHANNELS)) and channels.dtype == np.float32
    row = channels[50]
    on_path = row[:, CHANNEL_GRIPPER_OPEN] + row[:, CHANNEL_GRIPPER_CLOSED]
    # The mask is exactly the drawn path: every pixel is open or closed, never both, zero elsewhere.
    assert set(np.unique(on_path).tolist()) <= {0.0, 1.0} and on_path[25:175].all() and not on_path[:15].any()
    assert np.array_equal(channels[..., 1:].sum(-1) > 0, (channels[..., 1:] > 0).any(-1))
    assert channels[10, :, :].sum() == 0  # far from the path: background
    # Open while reaching (x < 0.5), closed while carrying (0.5 < x < 0.9).
    assert row[60, CHANNEL_GRIPPER_OPEN] == 1 and row[60, CHANNEL_GRIPPER_CLOSED] == 0
    assert row[140, CHANNEL_GRIPPER_CLOSED] == 1 and row[140, CHANNEL_GRIPPER_OPEN] == 0
    # Progress grows from 0 at the start to 1 at the end, monotonically along this straight path.
    progress = row[25:175, CHANNEL_PROGRESS]
    assert progress[0] < 0.05 and progress[-1] > 0.95 and np.all(np.diff(progress) >= -1e-6)
    assert 0.0 <= channels[..., CHANNEL_PROGRESS].min() and channels[..., CHANNEL_PROGRESS].max() <= 1.0
    as_bytes = draw_path_channels(100, 200, PICK, dtype=np.uint8)
    assert as_bytes.dtype == np.uint8 and np.abs(as_bytes / 255.0 - channels).max() <= 0.5 / 255 + 1e-6


def test_path_channels_mark_changes_and_validate_inputs():
    from hamster_core.drawing import CHANNEL_GRIPPER_CLOSED, draw_path_channels
    single = draw_path_channels(50, 50, Path2D([[0.5, 0.5]], [GripperState.CLOSED]))
    assert single[25, 25, CHANNEL_GRIPPER_CLOSED] == 1 and single[..., CHANNEL_GRIPPER_CLOSED].sum() > 1
    for kwargs, reason in (({"height": 0}, "height and width"), ({"num_points": 1}, "num_points"),
                           ({"thickness": 0}, "thickness"), ({"dtype": np.int64}, "dtype")):
        args = {"height": 10, "width": 10, "path": PICK, **kwargs}
        with pytest.raises(ValueError, match=reason):
            draw_path_channels(**args)
