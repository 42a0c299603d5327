"""A stand-in for HAMSTER's VLM server in the simulator: an OpenAI-compatible chat server (HAMSTER's dialect,
see `chat_server`) that answers with the oracle's path for the simulated scene.

It is a ROS node too: like the VLM node with `backend:=oracle` it subscribes to /sim/scene, the camera model and
the end-effector pose, and answers a chat request for the instruction in the prompt's `<quest>` tags. So
`hamster-demo --vlm-backend openai` exercises the real HTTP client, retries and parsing end to end.

    python -m hamster_sim.vlm_server --ros-args -p port:=8000 -p model:=HAMSTER_dev

`hamster-demo --sim-vlm-server` starts it with the address and model of the VLM node's `openai.*` parameters
(hamster_apps.graph.sim_vlm_server_spec).
"""
from __future__ import annotations

import threading

from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import String

from hamster_core.chat_server import ChatRequest, ChatServer, ChatServerError
from hamster_core.vlm import VlmError, VlmRequest
from hamster_ros import interfaces as topics
from hamster_ros.conversions import camera_from_msg, pose_from_msg
from hamster_ros.latest import LatestMessages
from hamster_ros.node_main import RuntimeNode, declare, run_node
from hamster_sim.oracle_vlm import OracleBackend

NODE_NAME = "sim_vlm_server"


class SimVlmServer(RuntimeNode):
    def __init__(self):
        super().__init__(NODE_NAME)
        host = declare(self, "host", "127.0.0.1", "Address to listen on.")
        port = declare(self, "port", 8000, "Port to listen on.")
        model = declare(self, "model", "HAMSTER_dev", "The model name requests must carry.")
        rdp_epsilon = declare(self, "rdp_epsilon", 0.05, "RDP epsilon of the oracle's path.")
        self.oracle = OracleBackend(rdp_epsilon)
        group = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, group)
        self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.latest.subscribe("ee_pose", PoseStamped, topics.EE_POSE, topics.SENSOR)
        self.latest.subscribe("scene", String, topics.SIM_SCENE, topics.LATCHED)
        try:
            self.server = ChatServer(self.answer, model=model, host=host, port=port)
        except OSError as error:  # e.g. the port is taken: a parameter problem, reported as such
            raise ValueError(f"cannot listen on {host}:{port}: {error}") from None
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        self._thread.start()
        self.get_logger().info(f"serving {model!r} on {self.server.base_url}/chat/completions")

    def answer(self, chat: ChatRequest) -> str:
        instruction = chat.instruction
        if not instruction:
            raise ChatServerError("the prompt has no <quest>instruction</quest>")
        if chat.image is None:
            raise ChatServerError("the request has no image")
        info, camera_pose, ee_pose, scene = self.latest.get("camera_info", "camera_pose", "ee_pose", "scene")
        if info is None or camera_pose is None or ee_pose is None or scene is None:
            raise ChatServerError("the simulator's scene, camera and end-effector pose have not arrived yet")
        request = VlmRequest(image=chat.image, instruction=instruction,
                             camera=camera_from_msg(info, pose_from_msg(camera_pose).matrix()),
                             tcp_pose=pose_from_msg(ee_pose), scene_json=scene.data)
        try:
            return self.oracle.query(request)
        except VlmError as error:
            raise ChatServerError(str(error)) from None

    def close(self):
        self.server.stop()


def main():
    run_node(SimVlmServer)


if __name__ == "__main__":
    main()
