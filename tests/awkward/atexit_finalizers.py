"""atexit handlers, weakref finalizers and __del__ at exit, in Python's order."""

import atexit
import weakref


class Resource:
    def __init__(self, name):
        self.name = name

    def __del__(self):
        print("del", self.name, flush=True)


def goodbye(name):
    print("atexit", name, flush=True)


def finalized(name):
    print("finalize", name, flush=True)


kept = Resource("kept")
weakref.finalize(kept, finalized, "kept")
atexit.register(goodbye, "first")
atexit.register(goodbye, "second")
print("main done")
