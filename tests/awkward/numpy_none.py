"""The program blocks numpy (sys.modules["numpy"] = None) before it is imported."""

import sys

sys.modules["numpy"] = None


def total(values):
    return sum(values)


print(total([1, 2, 3]))
