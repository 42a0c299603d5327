"""The franka_msgs TEST STAND-IN (tools/franka_msgs_standin) matches franka_ros2's franka_msgs field for field,
defaults included (issue 18: the gripper actions' feedback lacked current_width, GraspEpsilon its 0.005 defaults).
FRANKA_MSGS holds franka_ros2's definitions (franka_msgs/, humble branch), comments left out."""
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "tools" / "franka_msgs_standin"

FRANKA_MSGS = {
    "action/Grasp.action": ["float64 width", "GraspEpsilon epsilon", "float64 speed", "float64 force", "---",
                            "bool success", "string error", "---", "float64 current_width"],
    "action/Move.action": ["float64 width", "float64 speed", "---", "bool success", "string error", "---",
                           "float64 current_width"],
    "action/Homing.action": ["---", "bool success", "string error", "---", "float64 current_width"],
    "msg/GraspEpsilon.msg": ["float64 inner 0.005", "float64 outer 0.005"],
}


def fields(path: Path) -> list[str]:
    """A .msg/.action file's field lines: comments and blank lines dropped, whitespace normalised."""
    lines = (" ".join(line.split("#", 1)[0].split()) for line in path.read_text().splitlines())
    return [line for line in lines if line]


@pytest.mark.parametrize("name", sorted(FRANKA_MSGS))
def test_the_standin_definition_equals_franka_msgs(name):
    assert fields(STANDIN / name) == FRANKA_MSGS[name]
