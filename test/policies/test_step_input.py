"""step_input: the learned policies told how many keyframes their episode has executed (RVT/PerAct's timestep).

Regression it pins: without it, "carry on, closed" and "release" (and "above the object" and "grasp") came from
near-identical observations, and the gripper prediction there sat on a knife edge (issue 22).
"""
import numpy as np
import pytest
import torch

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, top_down_orientation
from hamster_core.policies.base import POLICIES
from hamster_core.policies.conditioning import add_targets, collate, prepare_inputs
from scenes import scene_observation
from tiny_models import TINY_DDA, TINY_RVT2

TINY = {"rvt2": TINY_RVT2, "3dda": TINY_DDA}


@pytest.mark.parametrize("name", ["rvt2", "3dda"])
def test_without_step_input_the_model_has_no_step_weights(name):
    # Checkpoints trained before step_input existed have no such weights and must load unchanged.
    plain = POLICIES.create(name, **TINY[name], conditioning="none")
    assert not any("step" in key for key in plain.model.state_dict())
    with_step = POLICIES.create(name, **TINY[name], conditioning="none", step_input=True)
    assert any("step" in key for key in with_step.model.state_dict())


@pytest.mark.parametrize("name", ["rvt2", "3dda"])
def test_the_policy_gives_the_model_its_own_keyframe_count(name):
    policy = POLICIES.create(name, **TINY[name], conditioning="none", step_input=True)
    seen = []
    predict = policy.model.predict
    policy.model.predict = lambda batch, generator=None: seen.append(batch["step"].tolist()) or predict(batch,
                                                                                                        generator)
    for _ in range(3):
        policy.select_action(scene_observation())
    policy.reset()
    policy.select_action(scene_observation())
    assert seen == [[0], [1], [2], [0]]


def test_rvt2_learns_two_targets_for_one_observation_told_apart_by_the_step():
    """The same observation at step 0 (go above the object, open) and step 1 (go down and close): with the step
    as an input both are learned; neither the scene nor the proprioception could tell them apart."""
    torch.manual_seed(0)
    policy = POLICIES.create("rvt2", **TINY_RVT2, conditioning="none", step_input=True)
    model, config = policy.model, policy.config
    above = Keyframe(Pose(np.array([0.55, 0.10, 0.20]), top_down_orientation(0.0)))
    grasp = Keyframe(Pose(np.array([0.55, 0.10, 0.04]), top_down_orientation(0.0)))
    inputs = [prepare_inputs(scene_observation(), config, step=step) for step in (0, 1)]
    batch = add_targets(collate(inputs), [[above], [grasp]], [False, False], [[False], [True]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss, _ = model.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    prediction = model.predict(batch)
    heights = prediction["position"][:, 0, 2].numpy()
    assert heights[0] > 0.15 and heights[1] < 0.09, heights
    assert prediction["gripper"][0, 0] < 0.2 < 0.8 < prediction["gripper"][1, 0]
