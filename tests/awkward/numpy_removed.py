"""The program imports numpy, then removes it from sys.modules."""

import sys

try:
    import numpy
except ImportError:
    numpy = None


def total(values):
    return sum(values)


print(total([1, 2, 3]))
sys.modules.pop("numpy", None)
print("numpy removed")
