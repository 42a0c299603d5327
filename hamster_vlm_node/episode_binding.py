"""Which instruction the VLM node plans for while an episode runs. ROS-free; the node feeds it the RunEpisode
goals that are running (from the action's status topic) and every instruction that arrives.

The policy node publishes its goal's instruction on /hamster/instruction when the episode starts. Anyone can
publish there, so while a goal runs the first instruction of that goal is its instruction, and any other one is
refused (the node logs and counts it) until the next goal. With no goal running (the VLM node used on its own,
or between episodes) every instruction is taken, the newest winning, as before.

The instruction and the goal's status come on different topics, so either may arrive first; `window_sec` allows
for that. All times are the VLM node's own monotonic clock (never a stamp from another node: simulated clocks of
two nodes can be seconds apart on a loaded machine):
- a goal first seen running within window_sec after an instruction was taken while no goal ran is bound to that
  instruction (one taken for an earlier goal never is: an episode that follows another at once has its own);
- an instruction that arrives while a bound goal runs is held, not refused at once: the next goal's instruction
  can arrive before the status saying the last goal ended. A new goal seen within window_sec claims it;
  otherwise it is refused.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    text: str
    arrived: float   # the VLM node's monotonic clock, seconds


class EpisodeBinding:
    def __init__(self, window_sec: float = 2.0):
        if not window_sec >= 0:
            raise ValueError(f"window_sec must be >= 0, got {window_sec!r}")
        self.window_sec = window_sec
        self._running: dict[str, float] = {}  # goal id -> acceptance stamp (orders the goals, nothing else)
        self._bound: dict[str, str] = {}      # goal id -> its instruction
        self._unclaimed: Instruction | None = None  # the instruction taken last while no goal ran
        self._held: list[Instruction] = []

    @property
    def current_goal(self) -> str | None:
        """The running goal accepted last (a policy node runs one at a time)."""
        return max(self._running, key=self._running.get) if self._running else None

    def bound_instruction(self) -> str | None:
        """The instruction of the running goal, if one runs and has one."""
        goal = self.current_goal
        return self._bound.get(goal) if goal is not None else None

    def admit(self, instruction: str, now: float) -> bool:
        """True: plan for `instruction` now. False: held until the goals show whose it is (running_goals claims
        it for a new goal, expired refuses it)."""
        arrival = Instruction(instruction, now)
        goal = self.current_goal
        if goal is not None and goal in self._bound:
            self._held.append(arrival)
            return False
        if goal is not None:
            self._bound[goal] = instruction
        self._unclaimed = arrival if goal is None else None
        return True

    def running_goals(self, goals: dict[str, float], now: float) -> Instruction | None:
        """The goals running now, id -> acceptance stamp; ended goals are forgotten. Returns a held instruction
        that turns out to belong to a new goal: plan for it now."""
        self._running = dict(goals)
        self._bound = {goal: text for goal, text in self._bound.items() if goal in self._running}
        goal = self.current_goal
        if goal is None or goal in self._bound:
            return None
        if self._held:  # held while the last goal still seemed to run: the newest is this goal's
            claimed, self._held = self._held[-1], self._held[:-1]
            self._bound[goal], self._unclaimed = claimed.text, None
            return claimed
        if self._unclaimed is not None and now - self._unclaimed.arrived <= self.window_sec:
            # Its instruction came before its status: already being planned.
            self._bound[goal], self._unclaimed = self._unclaimed.text, None
        return None

    def expired(self, now: float) -> list[tuple[Instruction, str, str]]:
        """Held instructions no new goal claimed within window_sec: (instruction, reason, detail) to count and log."""
        refused, kept = [], []
        for arrival in self._held:
            (kept if now - arrival.arrived < self.window_sec else refused).append(arrival)
        self._held = kept
        bound = self.bound_instruction()
        return [(arrival, "mid-episode" if arrival.text != bound else "repeated mid-episode",
                 f"{arrival.text!r} while the episode for {bound!r} runs (ignored until the next goal)")
                for arrival in refused]
