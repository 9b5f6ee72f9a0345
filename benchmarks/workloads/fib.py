"""Workload: naive recursive Fibonacci, pure in-scope call overhead.

``python fib.py [N]`` computes fib(N) (default 27: 635,621 calls) and prints it.
"""

from __future__ import annotations

import sys


def fib(n: int) -> int:
    """The n-th Fibonacci number, recursively."""
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main(argv: list[str]) -> None:
    """Run fib(N) with N from argv."""
    n = int(argv[1]) if len(argv) > 1 else 27
    print(f"fib({n}) = {fib(n)}")


if __name__ == "__main__":
    main(sys.argv)
