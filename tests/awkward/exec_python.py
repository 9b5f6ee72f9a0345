"""os.execv into another Python program: the calls before the exec are kept."""

import os
import sys


def before_exec():
    print("before exec", flush=True)


before_exec()
with open("before.txt", "w") as f:
    f.write("written before exec\n")
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_target.py")
os.execv(sys.executable, [sys.executable, target, "arg"])
