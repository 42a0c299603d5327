"""Polling for tests that watch a running graph."""
import time


def within(condition, timeout: float, alive=None):
    """Polls `condition` until it returns something truthy (returned) or `timeout` passes (None). `alive`
    (optional) is called between polls, e.g. to fail at once when a node process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(0.02)
    return None


def wait_until(condition, what: str, timeout: float = 60.0, alive=None):
    """Polls `condition` until it returns something truthy; the timeout only bounds a hang, it is not a check."""
    value = within(condition, timeout, alive)
    if not value:
        raise AssertionError(f"gave up waiting for {what}")
    return value


def call_service(client, request, timeout: float = 30.0, alive=None, resend_after: float | None = 10.0):
    """Waits for the service, then calls it the way the episode client does: an unanswered request is sent again
    after `resend_after` s (a just-started server's reply can be lost; CI stop 25), `None` for a request that must
    not run twice."""
    from hamster_apps.episode_client import call_service as call_with_resend
    name = client.srv_name
    deadline = time.monotonic() + timeout
    wait_until(client.service_is_ready, f"the service {name}", timeout, alive)
    try:
        return call_with_resend(client, request, f"the reply of {name}", max(deadline - time.monotonic(), 0.1),
                                alive or (lambda: None), resend_after)
    except TimeoutError as error:
        raise AssertionError(str(error)) from None
