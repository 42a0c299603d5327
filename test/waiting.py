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



def call_service(client, request, timeout: float = 30.0, alive=None, resend_after: float | None = 10.0):
    """Waits for the service, calls it and returns the reply. Without a reply after `resend_after` s the request
    is sent again: a just-started server's reply can be lost, as rmw_fastrtps gives up sending a response before
    the client's reply reader is matched ("failed to send response (timeout)"; CI stop 25). `resend_after=None`
    for a request that must not run twice."""
    name = client.srv_name
    deadline = time.monotonic() + timeout
    wait_until(client.service_is_ready, f"the service {name}", timeout, alive)
    while True:
        future = client.call_async(request)
        left = deadline - time.monotonic()
        try:
            wait_until(future.done, f"the reply of {name}", left if resend_after is None else min(resend_after, left),
                       alive)
            return future.result()
        except AssertionError:
            client.remove_pending_request(future)
            if resend_after is None or time.monotonic() >= deadline:
                raise
            print(f"no reply of {name} in {resend_after:.0f} s: sending the request again")
