"""Drives episodes in a running graph: reset a seeded scene, run the RunEpisode action, ask the simulator whether
the task was achieved. Shared by the demo, the soak benchmark and simulated evaluation, and a command of its own
for a graph started with `hamster-run` (or `ros2 launch`):

    python -m hamster_apps.episode_client [--seed N] [--instruction TEXT] [--enable] [--timeout SEC]

Run it with the graph's ROS_DOMAIN_ID (hamster-run prints it). By default it resets the simulator to scene N,
runs that scene's instruction and asks the simulator whether it was achieved; `--instruction` runs the given
words on the scene as it is, without a success check (this needs no simulator: a real robot's graph too).
`--enable` first calls /robot/enable (robot:=franka). Prints one JSON line; exit code 0 when the episode
succeeded, 1 when it did not or could not run (the reason on stderr), 2 for bad options. Ctrl-C cancels the
running episode.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

from rclpy.action import ActionClient
from rclpy.node import Node
from std_srvs.srv import SetBool, Trigger

from hamster_msgs.action import RunEpisode
from hamster_msgs.srv import ResetScene
from hamster_ros import interfaces as topics
from hamster_ros.dds import confine_dds_to_this_machine


class EpisodeError(RuntimeError):
    """The graph could not run the episode (a node died, a call timed out, the reset failed)."""


ANSWER_WAIT_SEC = 10.0   # for the policy node's answer to an episode goal


def within(ready: Callable[[], bool], seconds: float, check: Callable[[], None] = lambda: None) -> bool:
    """Whether `ready()` turns true within `seconds`; `check` is called between polls (to raise when a node of the
    graph exited)."""
    deadline = time.monotonic() + seconds
    while not ready():
        check()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def send_episode_goal(client: ActionClient, goal: RunEpisode.Goal, stop: Callable[[], None],
                      check: Callable[[], None] = lambda: None, tries: int = 3,
                      answer_wait_sec: float = ANSWER_WAIT_SEC):
    """Sends `goal` and returns the policy node's answer (the goal handle, accepted or not).

    rmw_fastrtps drops an answer that a just-started action server sends before it has matched this client's
    reply reader ("failed to send response (timeout)" in the policy node's log): the episode then runs with
    nobody waiting for it. So a goal with no answer within `answer_wait_sec` is stopped (`stop`: /hamster/stop,
    the arm holds) and sent again; a rejection right after such a stop (that episode still ending) is retried too.
    `check` is called while waiting (to raise when a node of the graph exited). TimeoutError after `tries` goals
    without an answer."""
    stopped = False
    for _ in range(tries):
        future = client.send_goal_async(goal)
        deadline = time.monotonic() + answer_wait_sec
        while not future.done() and time.monotonic() < deadline:
            check()
            time.sleep(0.02)
        if not future.done():
            stop()
            stopped = True
            continue
        handle = future.result()
        if handle.accepted or not stopped:
            return handle
        time.sleep(1.0)
    raise TimeoutError(f"no answer to the episode goal in {tries} tries of {answer_wait_sec:g} s")


def call_service(client, request, what: str, timeout: float, check: Callable[[], None] = lambda: None,
                 resend_after: float | None = ANSWER_WAIT_SEC):
    """Calls a service and returns its reply. A just-started server's reply can be lost the same way as an episode
    goal's answer (send_episode_goal), so a request without a reply after `resend_after` s is sent again:
    `resend_after=None` for a request that must not run twice. `check` is called while waiting. TimeoutError
    naming `what` after `timeout` s without a reply."""
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        wait = deadline - time.monotonic() if resend_after is None else min(deadline - time.monotonic(), resend_after)
        if within(future.done, wait, check):
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        print(f"no reply for {what} in {resend_after:g} s: sending the request again", file=sys.stderr)


class EpisodeClient:
    """`node` must be spun by an executor on another thread; `check_alive` raises EpisodeError when a node
    of the graph has exited, so waits end at once instead of at their timeout."""

    def __init__(self, node: Node, check_alive: Callable[[], None] = lambda: None):
        self.check_alive = check_alive
        self._reset = node.create_client(ResetScene, topics.SIM_RESET)
        self._check = node.create_client(Trigger, topics.SIM_CHECK_SUCCESS)
        self._episode = ActionClient(node, RunEpisode, topics.RUN_EPISODE)
        self._stop = node.create_client(Trigger, topics.STOP)
        self.goal = None   # the running episode's goal handle, for cancel()

    def within(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Whether `ready()` turns true within `seconds` (EpisodeError at once when a node of the graph exits)."""
        return within(ready, seconds, self.check_alive)

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        if not self.within(ready, timeout):
            raise EpisodeError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _call(self, future, what: str, timeout: float):
        self.wait_for(future.done, what, timeout)
        return future.result()

    def _call_service(self, client, request, what: str, timeout: float = 30.0):
        try:
            return call_service(client, request, what, timeout, self.check_alive)
        except TimeoutError as error:
            raise EpisodeError(str(error)) from None

    def wait_until_ready(self, timeout: float) -> None:
        self.wait_for(lambda: (self._reset.service_is_ready() and self._check.service_is_ready()
                               and self._episode.server_is_ready()), "the simulator and the policy node", timeout)

    def reset(self, seed: int) -> str:
        """A new scene; returns its instruction."""
        response = self._call_service(self._reset, ResetScene.Request(seed=int(seed)), "the scene reset")
        if not response.success:
            raise EpisodeError(f"scene reset failed: {response.message}")
        return response.instruction

    def _stop_unanswered(self) -> None:
        print("the policy node did not answer the episode goal: stopping the episode it may have started, and "
              "sending the goal again", file=sys.stderr)
        self.within(self._stop.call_async(Trigger.Request()).done, 10.0)

    def start(self, instruction: str, timeout: float):
        """The accepted episode's goal handle (EpisodeError when rejected or never answered)."""
        try:
            goal = send_episode_goal(self._episode, RunEpisode.Goal(instruction=instruction,
                                                                     timeout_sec=float(timeout)),
                                     self._stop_unanswered, self.check_alive)
        except TimeoutError as error:
            raise EpisodeError(str(error)) from None
        if not goal.accepted:
            raise EpisodeError("the policy node rejected the episode")
        return goal

    def run(self, instruction: str, timeout: float) -> RunEpisode.Result:
        goal = self.start(instruction, timeout)
        self.goal = goal   # kept when the wait ends early (Ctrl-C, timeout), so cancel() can still reach it
        result = self._call(goal.get_result_async(), "the episode", timeout + 30).result
        self.goal = None
        return result

    def wait_for_policy(self, timeout: float) -> None:
        """Wait for the policy node's RunEpisode action only (a graph without the simulator)."""
        self.wait_for(self._episode.server_is_ready, f"the policy node's {topics.RUN_EPISODE} action", timeout)

    def cancel(self, timeout: float = 5.0) -> bool:
        """Cancel the running episode, if any (the policy node holds the arm); True when one was canceled."""
        goal = self.goal
        if goal is None:
            return False
        future = goal.cancel_goal_async()
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        return future.done()

    def check_success(self) -> Trigger.Response:
        return self._call_service(self._check, Trigger.Request(), "the success check")

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


def enable_robot(node: Node, timeout: float, check_alive: Callable[[], None] = lambda: None,
                 resend_after: float = ANSWER_WAIT_SEC) -> str:
    """Call /robot/enable until the franka adapter accepts it (it needs a fresh, healthy robot state). An
    unanswered call is sent again (call_service): enabling twice is harmless, and a just-started adapter's reply
    can be lost (a fresh-clone test waited 60 s on one the bridge had answered "enabled")."""
    client = node.create_client(SetBool, topics.ROBOT_ENABLE)
    deadline = time.monotonic() + timeout
    message = "the enable service did not answer"
    while time.monotonic() < deadline:
        check_alive()
        if client.service_is_ready():
            try:
                response = call_service(client, SetBool.Request(data=True), "the enable reply",
                                        max(deadline - time.monotonic(), 0.1), check_alive, resend_after)
            except TimeoutError:
                break
            if response.success:
                return response.message
            message = response.message
        time.sleep(0.2)
    raise EpisodeError(f"could not enable the robot within {timeout:.0f} s: {message}")


def failure_reason(result: dict) -> str | None:
    """Why an episode's result (EpisodeClient.episode's dict, plus "error" when the graph could not run it) is not
    a success, in words for the terminal; None for a success."""
    if result.get("success"):
        return None
    if result.get("error"):
        return result["error"]
    if not result.get("policy_success", False):
        return f"the episode ended unsuccessfully: {result.get('policy_message') or 'no message'}"
    return f"the policy finished, but the task is not done: {result.get('check') or 'no check'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="simulator scene to reset to (without --instruction)")
    parser.add_argument("--instruction", default=None,
                        help="run these words on the scene as it is: no reset, no success check")
    parser.add_argument("--enable", action="store_true", help="call /robot/enable first (robot:=franka)")
    parser.add_argument("--timeout", type=float, default=120.0, help="episode time limit (s, the graph's ROS time)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="wait for the graph's services (s)")
    parser.add_argument("--settle", type=float, default=1.0, help="wait before the success check (s)")
    args = parser.parse_args(argv)
    if args.instruction is not None and not args.instruction.strip():
        parser.error("--instruction must not be empty")
    confine_dds_to_this_machine(os.environ)  # as hamster-run starts the nodes

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from hamster_apps.runner import stop_on_signals
    from hamster_ros.spinner import BackgroundSpinner

    stop_on_signals()
    # rclpy's own SIGINT handler would shut the context down before the running episode could be canceled.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = Node("hamster_episode_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = BackgroundSpinner(executor)
    client = EpisodeClient(node)
    result: dict = {"success": False, "domain_id": int(os.environ.get("ROS_DOMAIN_ID", "0"))}
    try:
        if args.enable:
            result["enable"] = enable_robot(node, args.startup_timeout)
        if args.instruction is None:
            client.wait_until_ready(args.startup_timeout)
            result.update(client.episode(args.seed, args.timeout, args.settle))
        else:
            client.wait_for_policy(args.startup_timeout)
            started = time.monotonic()
            outcome = client.run(args.instruction.strip(), args.timeout)
            result.update(instruction=args.instruction.strip(), episode_seconds=round(time.monotonic() - started, 2),
                          policy_success=outcome.success, policy_message=outcome.message, success=outcome.success)
    except EpisodeError as error:
        result["error"] = str(error)
    except KeyboardInterrupt:
        result["error"] = "interrupted" + (": the episode was canceled" if client.cancel() else "")
    finally:
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    reason = failure_reason(result)
    if reason:
        print(f"episode_client: FAILED: {reason}", file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
