"""Damped-least-squares differential IK that drives position-controlled joints toward a Cartesian target.

The IK integrates a commanded joint configuration on its own kinematic copy of the model (its own MjData), so
it converges exactly on the kinematics and does not fight the actuator dynamics; the position actuators then
track the commanded joints. With gravity compensation on the arm the measured pose settles on the target too.
"""
from __future__ import annotations

import mujoco
import numpy as np

from hamster_core.geometry import Pose, quaternion_to_matrix


def _mujoco_to_ros_quaternion(wxyz) -> np.ndarray:
    return np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


class DifferentialIK:
    """Steps a commanded arm configuration toward a site pose target, once per control period.

    Per step: twist = gains * pose error (base frame), joint velocity = J^T (J J^T + damping^2 I)^-1 twist plus a
    null-space pull toward the posture; the whole joint velocity is scaled down when any joint would exceed
    max_joint_velocity, integrated over dt, and clamped inside the joint limits (less a margin).
    """

    def __init__(self, model: mujoco.MjModel, site: str, joints: list[str], posture, *,
                 damping: float = 0.02, position_gain: float = 100.0, orientation_gain: float = 100.0,
                 posture_gain: float = 2.0, max_joint_velocity: float = 1.5, joint_limit_margin: float = 0.02):
        self._site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self._site_id < 0:
            raise ValueError(f"no site named {site!r} in the model")
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in joints]
        missing = [name for name, i in zip(joints, joint_ids) if i < 0]
        if missing:
            raise ValueError(f"no joint(s) named {missing} in the model")
        one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        if any(int(model.jnt_type[i]) not in one_dof for i in joint_ids):
            raise ValueError(f"joints must be hinge or slide joints, got {joints}")
        posture = np.asarray(posture, dtype=float)
        if posture.shape != (len(joints),) or not np.all(np.isfinite(posture)):
            raise ValueError(f"posture must be {len(joints)} finite joint positions, got {posture!r}")
        for name, value in (("damping", damping), ("position_gain", position_gain),
                            ("orientation_gain", orientation_gain), ("max_joint_velocity", max_joint_velocity)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name, value in (("posture_gain", posture_gain), ("joint_limit_margin", joint_limit_margin)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

        self._model = model
        self._data = mujoco.MjData(model)
        self._qpos_index = model.jnt_qposadr[joint_ids]
        self._dof_index = model.jnt_dofadr[joint_ids]
        limits = model.jnt_range[joint_ids]
        self._lower = limits[:, 0] + joint_limit_margin
        self._upper = limits[:, 1] - joint_limit_margin
        self._posture = posture
        self._damping_matrix = damping ** 2 * np.eye(6)
        self._gains = np.array([position_gain] * 3 + [orientation_gain] * 3)
        self._posture_gain = posture_gain
        self._max_joint_velocity = max_joint_velocity
        self._jacobian = np.zeros((6, model.nv))
        self._error_quaternion = np.empty(4)
        self._rotation_error = np.empty(3)
        self._target = None
        self._target_rotation = np.eye(3)
        self._q = np.clip(posture, self._lower, self._upper)
        self._update_kinematics()

    def reset(self, joint_positions) -> None:
        """Restart from a configuration (e.g. the measured one after a reset)."""
        q = np.asarray(joint_positions, dtype=float)
        if q.shape != self._q.shape or not np.all(np.isfinite(q)):
            raise ValueError(f"joint_positions must be {self._q.size} finite numbers, got {joint_positions!r}")
        self._q = np.clip(q, self._lower, self._upper)
        self._update_kinematics()

    def site_pose(self) -> Pose:
        """Site pose at the commanded configuration."""
        quaternion = np.empty(4)
        mujoco.mju_mat2Quat(quaternion, self._data.site_xmat[self._site_id])
        return Pose(self._data.site_xpos[self._site_id].copy(), _mujoco_to_ros_quaternion(quaternion))

    def step(self, target: Pose, dt: float) -> np.ndarray:
        """Advance the commanded configuration by one control period toward target; returns it."""
        if target is not self._target:  # the same target is usually stepped toward many times
            self._target = target
            self._target_rotation = quaternion_to_matrix(target.orientation)
        site_position = self._data.site_xpos[self._site_id]
        site_rotation = self._data.site_xmat[self._site_id].reshape(3, 3)
        mujoco.mju_mat2Quat(self._error_quaternion, (self._target_rotation @ site_rotation.T).ravel())
        mujoco.mju_quat2Vel(self._rotation_error, self._error_quaternion, 1.0)  # axis * angle, shortest way
        error = np.concatenate([target.position - site_position, self._rotation_error])

        mujoco.mj_jacSite(self._model, self._data, self._jacobian[:3], self._jacobian[3:], self._site_id)
        jacobian = self._jacobian[:, self._dof_index]
        posture_velocity = self._posture_gain * (self._posture - self._q)
        # J+ (twist - J p) + p == J+ twist + (I - J+ J) p: the posture pull stays in the task's null space.
        task_twist = self._gains * error - jacobian @ posture_velocity
        velocity = posture_velocity + jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + self._damping_matrix,
                                                                   task_twist)
        fastest = np.max(np.abs(velocity))
        if fastest > self._max_joint_velocity:  # scale, do not clip: keeps the direction of motion
            velocity *= self._max_joint_velocity / fastest
        self._q = np.clip(self._q + velocity * dt, self._lower, self._upper)
        self._update_kinematics()
        return self._q.copy()

    def _update_kinematics(self) -> None:
        self._data.qpos[self._qpos_index] = self._q
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_comPos(self._model, self._data)  # mj_jacSite needs the com-based frames
