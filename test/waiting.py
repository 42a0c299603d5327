"""Polling for tests that watch a running graph."""
import time


def wait_until(condition, what: str, timeout: float = 60.0, alive=None):
    """Polls `condition` until it returns something truthy; the timeout only bounds a hang, it is not a check.
    `alive` (optional) is called between polls, e.g. to fail at once when a node process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def call_repeatable(client, request, what: str, timeout: float = 30.0, alive=None, reply_timeout: float = 5.0):
    """Calls a service until one reply arrives, sending the request again after `reply_timeout` without one.
    A just-started server's reply can be lost: rmw_fastrtps gives up sending a response before the client's reply
    reader is matched ("failed to send response (timeout)"). Only for requests that are harmless to repeat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        try:
            wait_until(future.done, what, min(reply_timeout, max(deadline - time.monotonic(), 0.0)), alive)
        except AssertionError:
            client.remove_pending_request(future)
            print(f"no reply for {what} in {reply_timeout:.0f} s: sending the request again")
            continue
        return future.result()
    raise AssertionError(f"gave up waiting for {what}")
