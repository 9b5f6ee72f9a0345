"""os.fork from the main thread and from another thread: in each child the
trace's thread is the child's own (its ident and native id, passed to ``seen``)."""

import os
import threading
import warnings

# 3.12+ warns about the fork from a thread, with the pid: not the same twice
warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)


def seen(ident, native_id):
    return ident, native_id


def child():
    seen(threading.get_ident(), threading.get_native_id())
    os._exit(0)


def fork_and_wait():
    pid = os.fork()
    if pid == 0:
        child()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    seen(threading.get_ident(), threading.get_native_id())
    fork_and_wait()
    thread = threading.Thread(target=fork_and_wait)
    thread.start()
    thread.join()
    print("forked twice")
