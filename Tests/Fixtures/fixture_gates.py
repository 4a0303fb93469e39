"""What the proxy tests' upstream fixtures (proxy_upstream.py, h2_upstream.py) share: the
byte pattern they serve, and named gates a slow answer waits on until the test opens them,
with a count of the requests that have reached each gate (an event a test can wait for).
"""
import threading

PATTERN = bytes(range(256)) * 4096  # 1 MiB
_GATES = {}
_ARRIVED = {}
_LOCK = threading.Lock()


def gate(name):
    with _LOCK:
        return _GATES.setdefault(name, threading.Event())


def arrived(name):
    with _LOCK:
        _ARRIVED[name] = _ARRIVED.get(name, 0) + 1


def arrivals(name):
    with _LOCK:
        return _ARRIVED.get(name, 0)
