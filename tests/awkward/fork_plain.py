"""A single-threaded program calls os.fork (3.12+ warns only in a multi-threaded one)."""

import os


def child():
    print("child", flush=True)
    os._exit(3)


pid = os.fork()
if pid == 0:
    child()
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
