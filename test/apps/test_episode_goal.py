"""send_episode_goal: an episode goal the policy node never answers is stopped and sent again (regression: CI, a
fault test's goal was accepted by the policy node, whose answer rmw_fastrtps dropped with "failed to send response
(timeout)"; the client waited 30 s and failed while the episode ran unseen). The policy node's answers are played
by futures the test completes, as rclpy's ActionClient would."""
from types import SimpleNamespace

import pytest
from rclpy.task import Future

from hamster_apps import episode_client
from hamster_apps.episode_client import send_episode_goal


class Answers:
    """send_goal_async as the policy node answers: each item an accepted flag, or None for an answer lost."""

    def __init__(self, *answers):
        self.answers, self.sent = list(answers), 0

    def send_goal_async(self, goal):
        self.sent += 1
        future = Future()
        answer = self.answers.pop(0)
        if answer is not None:
            future.set_result(SimpleNamespace(accepted=answer))
        return future


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(episode_client.time, "sleep", lambda seconds: None)


def test_an_unanswered_goal_is_stopped_and_sent_again():
    stops, client = [], Answers(None, True)
    assert send_episode_goal(client, "goal", lambda: stops.append(1), answer_wait_sec=0.05).accepted
    assert client.sent == 2 and stops == [1]


def test_a_rejection_right_after_that_stop_is_asked_again():
    """The unseen episode may still be ending when the goal comes again: "another one is running"."""
    stops, client = [], Answers(None, False, True)
    assert send_episode_goal(client, "goal", lambda: stops.append(1), answer_wait_sec=0.05).accepted
    assert client.sent == 3 and stops == [1]


def test_an_answered_rejection_is_returned_and_nothing_is_stopped():
    stops, client = [], Answers(False)
    assert not send_episode_goal(client, "goal", lambda: stops.append(1), answer_wait_sec=0.05).accepted
    assert client.sent == 1 and stops == []


def test_no_answer_at_all_is_a_timeout_naming_the_tries():
    stops, client = [], Answers(None, None, None)
    with pytest.raises(TimeoutError, match="no answer to the episode goal in 3 tries"):
        send_episode_goal(client, "goal", lambda: stops.append(1), answer_wait_sec=0.05)
    assert stops == [1, 1, 1]
