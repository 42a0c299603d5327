"""Drives episodes in a running simulated graph: reset a seeded scene, run the RunEpisode action, ask the
simulator whether the task was achieved. Shared by the demo, the soak benchmark and simulated evaluation."""
from __future__ import annotations

import time
from typing import Callable

from rclpy.action import ActionClient
from rclpy.node import Node
from std_srvs.srv import Trigger

from hamster_msgs.action import RunEpisode
from hamster_msgs.srv import ResetScene
from hamster_ros import interfaces as topics


class EpisodeError(RuntimeError):
    """The graph could not run the episode (a node died, a call timed out, the reset failed)."""


class EpisodeClient:
    """`node` must be spun by an executor on another thread; `check_alive` raises EpisodeError when a node
    of the graph has exited, so waits end at once instead of at their timeout."""

    def __init__(self, node: Node, check_alive: Callable[[], None] = lambda: None):
        self.check_alive = check_alive
        self._reset = node.create_client(ResetScene, topics.SIM_RESET)
        self._check = node.create_client(Trigger, topics.SIM_CHECK_SUCCESS)
        self._episode = ActionClient(node, RunEpisode, topics.RUN_EPISODE)

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise EpisodeError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def _call(self, future, what: str, timeout: float):
        self.wait_for(future.done, what, timeout)
        return future.result()

    def wait_until_ready(self, timeout: float) -> None:
        self.wait_for(lambda: (self._reset.service_is_ready() and self._check.service_is_ready()
                               and self._episode.server_is_ready()), "the simulator and the policy node", timeout)

    def reset(self, seed: int) -> str:
        """A new scene; returns its instruction."""
        response = self._call(self._reset.call_async(ResetScene.Request(seed=int(seed))), "the scene reset", 30)
        if not response.success:
            raise EpisodeError(f"scene reset failed: {response.message}")
        return response.instruction

    def run(self, instruction: str, timeout: float) -> RunEpisode.Result:
        goal = self._call(self._episode.send_goal_async(RunEpisode.Goal(instruction=instruction,
                                                                         timeout_sec=float(timeout))),
                          "the episode to be accepted", 30)
        if not goal.accepted:
            raise EpisodeError("the policy node rejected the episode")
        return self._call(goal.get_result_async(), "the episode", timeout + 30).result

    def check_success(self) -> Trigger.Response:
        return self._call(self._check.call_async(Trigger.Request()), "the success check", 30)

    def episode(self, seed: int, timeout: float, settle: float = 1.0) -> dict:
        """Reset, run and judge one episode. `settle` lets a released object come to rest before judging."""
        instruction = self.reset(seed)
        started = time.monotonic()
        outcome = self.run(instruction, timeout)
        seconds = time.monotonic() - started
        time.sleep(settle)
        verdict = self.check_success()
        return {"seed": int(seed), "instruction": instruction, "episode_seconds": round(seconds, 2),
                "policy_success": outcome.success, "policy_message": outcome.message,
                "success": bool(verdict.success and outcome.success), "check": verdict.message}
