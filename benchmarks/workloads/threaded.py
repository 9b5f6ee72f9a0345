"""Workload: four threads each running a call-heavy in-scope workload, joined.

Each thread computes a recursive Fibonacci number and runs a small
object-oriented accumulator loop. ``python threaded.py [N]`` (default 23: about
116k calls per thread, 465k in all) prints one checksum line.
"""

from __future__ import annotations

import sys
import threading

THREADS = 4


def fib(n: int) -> int:
    """The n-th Fibonacci number, recursively."""
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


class Account:
    """A balance with a history of postings."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0
        self.postings: list[int] = []

    def post(self, amount: int) -> None:
        """Add one posting."""
        self.balance += amount
        self.postings.append(amount)

    @property
    def average(self) -> float:
        """Mean posting."""
        return self.balance / len(self.postings) if self.postings else 0.0


def worker(index: int, n: int, results: list[str]) -> None:
    """One thread's share: fib(n) plus 100*fib(n-10) postings on an account."""
    value = fib(n)
    account = Account(f"thread-{index}")
    for step in range(100 * fib(n - 10)):
        account.post((step * 31 + index) % 97)
    results[index] = f"{account.owner}:{value}:{account.average:.3f}"


def main(argv: list[str]) -> None:
    """Start THREADS workers, join them, print their results."""
    n = int(argv[1]) if len(argv) > 1 else 23
    results = [""] * THREADS
    threads = [
        threading.Thread(target=worker, args=(i, n, results), name=f"worker-{i}")
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(" ".join(results))


if __name__ == "__main__":
    main(sys.argv)
