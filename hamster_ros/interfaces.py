"""Default topic names and QoS of the runtime. Nodes use these names; launch remaps adapt them to a robot.

QoS follows DESIGN.md: sensor streams best-effort keep-last, paths/instructions/scene latched (transient
local) so late joiners and replays see them, commands reliable.
"""
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
# robot:=franka, from the franka adapter (hamster_ros.franka_bridge):
ROBOT_STATUS = "/robot/status"            # std_msgs/String JSON, latched: gate disabled|streaming|halted, mode, reason
GRIPPER_RESULT = "/robot/gripper_result"  # std_msgs/String JSON per gripper goal: action, success, error, seconds
ROBOT_ENABLE = "/robot/enable"            # std_srvs/SetBool: true starts streaming to the controller, false stops
ROBOT_STOP = "/robot/stop"                # std_srvs/Trigger: halt the stream to the controller until enabled again

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
