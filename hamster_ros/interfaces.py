"""Default topic names and QoS of the runtime. Nodes use these names; launch remaps adapt them to a robot.

QoS (docs/architecture.md): sensor streams best-effort keep-last, paths/instructions/scene latched (transient
local) so late joiners and replays see them, commands reliable.
"""
import importlib.util
import subprocess
import sys

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

SENSOR = qos_profile_sensor_data
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMAND = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
EVENTS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

# Camera (RealSense-style names), all in one camera frame; the point cloud is in the robot base frame.
COLOR_IMAGE = "/camera/color/image_raw"
COLOR_INFO = "/camera/color/camera_info"
DEPTH_IMAGE = "/camera/depth/image_raw"
POINTS = "/camera/points"
CAMERA_POSE = "/camera/pose"              # PoseStamped: camera optical frame in the base frame (latched)
SEGMENTATION = "/camera/segmentation"     # 32SC1 object ids (simulator ground truth only)

# Robot interface: what the simulator offers and the Franka bringup maps onto franka_ros2.
JOINT_STATES = "/robot/joint_states"
EE_POSE = "/robot/ee_pose"
CARTESIAN_TARGET = "/robot/cartesian_target"
GRIPPER_COMMAND = "/robot/gripper_command"
# robot:=franka, from the franka adapter (hamster_franka.franka_bridge):
ROBOT_STATUS = "/robot/status"            # std_msgs/String JSON, latched: gate disabled|streaming|halted, mode, reason
GRIPPER_RESULT = "/robot/gripper_result"  # std_msgs/String JSON per gripper goal: action, success, error, seconds
ROBOT_ENABLE = "/robot/enable"            # std_srvs/SetBool: true starts streaming to the controller, false stops
ROBOT_STOP = "/robot/stop"                # std_srvs/Trigger: halt the stream to the controller until enabled again
FRANKA_ROBOT_STATE = "/franka_robot_state_broadcaster/robot_state"   # franka_msgs/FrankaRobotState (franka_ros2)
ROBOT_RECOVER = "/robot/recover"          # std_srvs/Trigger: error recovery + controllers re-activated, then disabled

# Runtime.
INSTRUCTION = "/hamster/instruction"
PATH = "/hamster/path"
PATH_IMAGE = "/hamster/path_image"
VLM_STATUS = "/hamster/vlm_status"        # std_msgs/String JSON, latched: planning | ok | failed per instruction
REPLAN = "/hamster/replan"                # std_srvs/Trigger: query the VLM again for the current instruction
MASKS = "/hamster/masks"
MASKS_IMAGE = "/hamster/masks_image"
GROUNDING = "/hamster/grounding"          # VLM node, mode masks/both: first-frame GroundingMasks (latched)
GROUNDING_IMAGE = "/hamster/grounding_image"
MARKERS = "/hamster/markers"            # visualization_msgs/MarkerArray for rviz (latched)
EXECUTOR_STATUS = "/hamster/executor_status"
RUN_EPISODE = "/hamster/run_episode"
STOP = "/hamster/stop"
DIAGNOSTICS = "/diagnostics"

# Simulator only.
SIM_SCENE = "/sim/scene"                  # std_msgs/String JSON: scene description + segmentation ids
SIM_RESET = "/sim/reset"
SIM_CHECK_SUCCESS = "/sim/check_success"
SIM_STALL_CAMERA = "/sim/stall_camera"    # std_srvs/SetBool fault injection (tests, bring-up)
SIM_FREEZE_STATE = "/sim/freeze_state"    # std_srvs/SetBool fault injection (tests, bring-up)


# franka_msgs: franka_ros2's package on a robot PC, or the test stand-in (hamster_franka.franka_standin).
MISSING_MESSAGE = ("franka_msgs is not importable: install franka_ros2 (it provides franka_msgs) and source its "
                   "workspace (source ~/franka_ros2_ws/install/setup.bash) before starting the franka adapter")


def franka_msgs_available(env: dict[str, str] | None = None) -> bool:
    """Whether `import franka_msgs` works in this process (env None) or in a child started with `env`."""
    if env is None:
        return importlib.util.find_spec("franka_msgs") is not None
    probe = subprocess.run([sys.executable, "-c", "import franka_msgs.msg, franka_msgs.action"], env=env,
                           capture_output=True, timeout=60)
    return probe.returncode == 0


def require_franka_msgs():
    """Import franka_msgs' message and action modules, or raise ImportError saying what to install."""
    try:
        from franka_msgs import action, msg  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{MISSING_MESSAGE} ({error})") from None
    return msg, action


def controller_switch_service():
    """controller_manager_msgs' SwitchController (ros2_control's, on a robot PC; or the test stand-in), or None."""
    try:
        from controller_manager_msgs.srv import SwitchController
    except ImportError:
        return None
    return SwitchController
