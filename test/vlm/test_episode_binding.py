"""Instructions bind to the running episode's goal (hamster_vlm_node/episode_binding.py, ROS-free). Times are the
VLM node's monotonic clock."""
import pytest

from hamster_vlm_node.episode_binding import EpisodeBinding, Instruction


def test_without_a_running_goal_every_instruction_is_taken():
    binding = EpisodeBinding()
    assert binding.admit("put the cup on the plate", 1.0)
    assert binding.admit("put the pot in the sink", 2.0)
    assert binding.bound_instruction() is None and binding.expired(100.0) == []


def test_the_first_instruction_of_a_goal_binds_and_others_are_refused_until_the_next_goal():
    binding = EpisodeBinding(window_sec=1.0)
    assert binding.running_goals({"g1": 10.0}, now=10.0) is None
    assert binding.admit("put the cup on the plate", 10.2)
    assert binding.bound_instruction() == "put the cup on the plate"
    assert not binding.admit("put the knife in the drawer", 11.0)   # held...
    assert not binding.admit("put the cup on the plate", 11.5)
    assert binding.expired(11.9) == []                               # ...for window_sec
    refused = binding.expired(12.6)
    assert [(arrival.text, reason) for arrival, reason, _ in refused] == [
        ("put the knife in the drawer", "mid-episode"), ("put the cup on the plate", "repeated mid-episode")]
    assert "while the episode for 'put the cup on the plate' runs" in refused[0][2]
    binding.running_goals({}, now=20.0)            # the episode ended
    assert binding.admit("put the knife in the drawer", 20.0)
    binding.running_goals({"g2": 30.0}, now=30.0)  # the next goal takes its own instruction
    assert binding.admit("stack the red block on the blue block", 30.1)
    assert not binding.admit("put the knife in the drawer", 31.0)


def test_an_instruction_that_came_before_its_goals_status_binds_to_that_goal():
    binding = EpisodeBinding(window_sec=1.0)
    assert binding.admit("put the cup on the plate", 9.8)   # the status is still on its way
    binding.running_goals({"g1": 1234.0}, now=10.0)          # (the goal's stamp is another node's clock)
    assert binding.bound_instruction() == "put the cup on the plate"
    # An old instruction does not bind a goal seen long after it.
    late = EpisodeBinding(window_sec=1.0)
    late.admit("put the cup on the plate", 1.0)
    late.running_goals({"g1": 5.0}, now=10.0)
    assert late.bound_instruction() is None and late.admit("put the pot in the sink", 10.1)


def test_the_next_goals_instruction_before_the_status_that_the_last_goal_ended_is_claimed_not_refused():
    binding = EpisodeBinding(window_sec=1.0)
    binding.running_goals({"g1": 10.0}, now=10.0)
    assert binding.admit("put the cup on the plate", 10.1)
    # g1 ended and g2 started, but the instruction of g2 comes first: held, then claimed by g2.
    assert not binding.admit("put the pot in the sink", 20.0)
    assert binding.running_goals({"g2": 19.9}, now=20.3) == Instruction("put the pot in the sink", 20.0)
    assert binding.bound_instruction() == "put the pot in the sink" and binding.expired(30.0) == []


def test_an_episode_right_after_another_is_not_bound_to_the_last_ones_instruction():
    """test_faults: a goal stopped and the next started within a second; the next goal's status came before its
    instruction and must not take the stopped goal's instruction for its own."""
    binding = EpisodeBinding(window_sec=2.0)
    binding.running_goals({"g1": 1.0}, now=10.0)
    assert binding.admit("put the cup on the plate", 10.1)
    binding.running_goals({}, now=10.5)             # g1 stopped
    binding.running_goals({"g2": 2.0}, now=10.9)    # g2 accepted, its instruction still on its way
    assert binding.bound_instruction() is None
    assert binding.admit("put the pot in the sink", 11.0)
    assert binding.bound_instruction() == "put the pot in the sink"


def test_the_newest_running_goal_counts_and_a_bad_window_is_refused():
    binding = EpisodeBinding()
    binding.running_goals({"old": 1.0, "new": 5.0}, now=6.0)
    assert binding.current_goal == "new"
    with pytest.raises(ValueError, match="window_sec"):
        EpisodeBinding(window_sec=-1)
