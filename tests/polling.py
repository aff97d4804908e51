"""The one polling helper of the tests: wait for something that is bound to happen (a frame on disk, a job's end)."""
import time


def wait_for(poll, until=bool, timeout: float = 120.0, every: float = 0.01):
    """Call `poll()` until `until(value)` holds and return that value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s; last value: {value!r}")
        time.sleep(every)
