"""The program replaces numpy in sys.modules by a module of its own, then by None."""

import sys
import types


def total(values):
    return sum(values)


print(total([1, 2, 3]))
sys.modules["numpy"] = types.ModuleType("numpy")
print("numpy replaced")
sys.modules["numpy.core"] = None
