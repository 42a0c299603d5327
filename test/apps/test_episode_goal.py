"""send_episode_goal: an episode goal the policy node never answers is stopped and sent again (regression: CI, a
fault test's goal was accepted by the policy node, whose answer rmw_fastrtps dropped with "failed to send response
(timeout)"; the client waited 30 s and failed while the episode ran unseen). call_service does the same for a service
reply. The nodes' answers are played by futures the test completes, as rclpy's clients would."""
from types import SimpleNamespace

import pytest
from rclpy.task import Future

from hamster_apps import episode_client
from hamster_apps.episode_client import call_service, send_episode_goal


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


class Replies:
    """A service client whose server answers as listed: a reply, or None for a reply lost on the way."""

    def __init__(self, *replies):
        self.replies, self.sent, self.abandoned = list(replies), 0, 0

    def call_async(self, request):
        self.sent += 1
        future = Future()
        reply = self.replies.pop(0)
        if reply is not None:
            future.set_result(reply)
        return future

    def remove_pending_request(self, future):
        self.abandoned += 1


def test_a_lost_service_reply_is_asked_again():
    """Regression: CI stop 25, a just-started node's reply to /robot/enable never came and the caller waited 30 s."""
    client = Replies(None, "the reset")
    assert call_service(client, "request", "the scene reset", 5.0, resend_after=0.05) == "the reset"
    assert client.sent == 2 and client.abandoned == 1


def test_a_request_that_must_not_run_twice_is_sent_once_and_times_out_naming_it():
    client = Replies(None, "a second recovery")
    with pytest.raises(TimeoutError, match="timed out after 0 s waiting for the recovery"):
        call_service(client, "request", "the recovery", 0.1, resend_after=None)
    assert client.sent == 1


def test_replies_never_coming_end_at_the_timeout():
    client = Replies(*[None] * 1000)
    with pytest.raises(TimeoutError, match="the success check"):
        call_service(client, "request", "the success check", 0.3, resend_after=0.05)
    assert 2 <= client.sent < 1000


def test_a_dead_graph_ends_the_wait_at_once():
    def check():
        raise episode_client.EpisodeError("sim_node exited")
    with pytest.raises(episode_client.EpisodeError, match="sim_node exited"):
        call_service(Replies(None), "request", "the scene reset", 30.0, check)


def test_enable_robot_asks_again_after_a_lost_reply_and_a_refusal():
    """Regression: a fresh-clone `--robot franka` demo failed with "could not enable the robot within 60 s: the
    enable service did not answer" while the bridge's log said "enabled": its one reply was lost."""
    client = Replies(None, SimpleNamespace(success=False, message="no robot state received yet"),
                     SimpleNamespace(success=True, message="enabled: streaming targets to the controller"))
    client.service_is_ready = lambda: True
    node = SimpleNamespace(create_client=lambda srv_type, name: client)
    assert episode_client.enable_robot(node, 5.0, resend_after=0.05) == "enabled: streaming targets to the controller"
    assert client.sent == 3 and client.abandoned == 1
