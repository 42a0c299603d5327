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
