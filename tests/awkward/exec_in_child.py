"""A forked child calls os.execv into another Python program: the child's calls
before the exec are kept, and the parent's trace is written as usual."""

import os
import sys


def before_exec():
    print("child before exec", flush=True)


target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_target.py")
pid = os.fork()
if pid == 0:
    before_exec()
    os.execv(sys.executable, [sys.executable, target, "from child"])
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
