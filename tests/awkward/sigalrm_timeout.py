"""A SIGALRM-based timeout: the program's handler raises, the exception stops
a busy loop and an interrupted sleep."""

import signal
import time


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout


def step(i):
    return i + 1


def spin():
    i = 0
    while True:
        i = step(i)


def with_timeout(function):
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        function()
    except Timeout:
        print("timed out:", function.__name__)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


signal.signal(signal.SIGALRM, on_alarm)
with_timeout(spin)
with_timeout(lambda: time.sleep(5))
