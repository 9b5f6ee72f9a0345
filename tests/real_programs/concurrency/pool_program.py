"""A program using multiprocessing.Pool with functions defined in this script:
map, imap_unordered, starmap and apply_async (one task raising), with the
platform's default start method and with "spawn". Prints the results and
writes them to results.txt in the current directory.

Usage: python pool_program.py [N_ITEMS]
"""

import multiprocessing
import sys


def collatz_steps(n: int) -> int:
    """Steps of the Collatz sequence from n down to 1."""
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def power(base: int, exponent: int) -> int:
    return base**exponent


def checked(n: int) -> int:
    if n == 3:
        raise ValueError(f"refusing {n}")
    return -n


def use_pool(context: multiprocessing.context.BaseContext, n: int) -> list[str]:
    """Every kind of Pool call, in a pool of 2 worker processes."""
    with context.Pool(processes=2) as pool:
        steps = pool.map(collatz_steps, range(1, n + 1), chunksize=3)
        unordered = sorted(pool.imap_unordered(collatz_steps, range(n, 2 * n)))
        powers = pool.starmap(power, [(2, 10), (3, 4), (5, 3)])
        pending = [pool.apply_async(checked, (i,)) for i in range(5)]
        outcomes = []
        for result in pending:
            try:
                outcomes.append(result.get(timeout=120))
            except ValueError as error:
                outcomes.append(f"ValueError: {error}")
    return [
        f"map: {steps}",
        f"imap_unordered: {unordered}",
        f"starmap: {powers}",
        f"apply_async: {outcomes}",
    ]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    lines = []
    for method in (None, "spawn"):
        label = method or "default"
        lines += [f"[{label}] {line}" for line in use_pool(multiprocessing.get_context(method), n)]
    for line in lines:
        print(line)
    with open("results.txt", "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
