"""The program sets a low recursion limit and leaves it so."""

import sys


def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)


print(depth(10))
sys.setrecursionlimit(30)
print("limit", sys.getrecursionlimit())
