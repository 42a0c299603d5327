"""A compliant arm for the simulator's franka interface: the commanded TCP position follows the controller's target
through a mass-spring-damper with Coulomb friction, as a Cartesian impedance controller on a real FR3 does. The
simulator's own controller tracks exactly (0.0 mm); with this, the pre-flight nudge and the executor's tracking
checks meet an arm that lags while moving and stops short by friction / stiffness at rest."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SUBSTEP_SEC = 0.001      # integration step (1 kHz, the real controller's rate)
STICK_SPEED = 1e-4       # m/s below which static friction can hold the arm


@dataclass
class CompliantTracking:
    stiffness: float                 # N/m, per axis (crisp_controllers' k_pos default is 400)
    friction: float = 0.0            # N, Coulomb: at rest the arm stops up to friction / stiffness short
    mass: float = 2.0                # kg, the effective Cartesian mass at the TCP
    damping_ratio: float = 1.0       # 1: critically damped
    position: np.ndarray | None = field(default=None, init=False)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3), init=False)

    def __post_init__(self):
        for name in ("stiffness", "mass"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"compliance {name} must be positive, got {value!r}")
        for name in ("friction", "damping_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"compliance {name} must be >= 0, got {value!r}")

    @property
    def damping(self) -> float:
        return 2.0 * self.damping_ratio * math.sqrt(self.stiffness * self.mass)

    def reset(self, position) -> None:
        """The arm is at `position`, at rest (start, a scene reset, the arm moved by something else)."""
        self.position = np.asarray(position, dtype=float).copy()
        self.velocity = np.zeros(3)

    def step(self, target, dt: float) -> np.ndarray:
        """Advance `dt` seconds toward `target`; returns the new position."""
        if self.position is None:
            raise RuntimeError("reset() first: the arm's start position is unknown")
        target = np.asarray(target, dtype=float)
        steps = max(1, int(math.ceil(dt / SUBSTEP_SEC)))
        h = dt / steps
        for _ in range(steps):
            spring = self.stiffness * (target - self.position)
            speed = float(np.linalg.norm(self.velocity))
            if speed < STICK_SPEED and np.linalg.norm(spring) <= self.friction:
                self.velocity = np.zeros(3)       # static friction holds it
                continue
            direction = self.velocity / speed if speed >= STICK_SPEED else spring / np.linalg.norm(spring)
            force = spring - self.damping * self.velocity - self.friction * direction
            velocity = self.velocity + h * force / self.mass
            if speed >= STICK_SPEED and float(np.dot(velocity, self.velocity)) < 0:
                velocity = np.zeros(3)            # friction stops the arm; it does not reverse it
            self.velocity = velocity
            self.position = self.position + h * self.velocity
        return self.position.copy()
