"""A program using threads and asyncio together: a thread pool, a producer and
consumers on a queue, an asyncio pipeline with tasks, an async generator,
a queue, a cancelled task, a timeout, asyncio.to_thread and an event loop
running in a thread of its own. Prints deterministic results and writes
report.json in the current directory; exits with status 0.

Usage: python threads_asyncio.py [N_ITEMS]
"""

import asyncio
import json
import queue
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine",
    "the early bird catches the worm",
    "all that glitters is not gold",
]


def word_counts(text: str) -> Counter[str]:
    return Counter(text.split())


def checksum(values: list[int]) -> int:
    total = 0
    for i, value in enumerate(values):
        total = (total * 31 + value * (i + 1)) % 1_000_003
    return total


def thread_pool() -> dict[str, int]:
    """Word counts of TEXTS, one text per task of a 3-thread pool."""
    merged: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pool") as pool:
        for counts in pool.map(word_counts, TEXTS):
            merged.update(counts)
    return dict(sorted(merged.items()))


def producer_consumers(n: int) -> list[int]:
    """One producer, two consumers and a sentinel per consumer; results sorted."""
    jobs: queue.Queue[int | None] = queue.Queue(maxsize=4)
    results: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while (item := jobs.get()) is not None:
            with lock:
                results.append(item * item)

    consumers = [threading.Thread(target=consume, name=f"consumer-{i}") for i in range(2)]
    for consumer in consumers:
        consumer.start()
    for item in range(n):
        jobs.put(item)
    for _ in consumers:
        jobs.put(None)
    for consumer in consumers:
        consumer.join()
    return sorted(results)


async def numbers(n: int):
    """An async generator."""
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def square_later(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


async def failing(x: int) -> int:
    await asyncio.sleep(0)
    raise ValueError(f"bad item {x}")


async def never_finishes() -> None:
    await asyncio.Event().wait()


async def pipeline(n: int) -> dict[str, object]:
    squares = await asyncio.gather(*[square_later(i) async for i in numbers(n)])
    outcomes = await asyncio.gather(square_later(2), failing(3), return_exceptions=True)
    described = [o if isinstance(o, int) else f"{type(o).__name__}: {o}" for o in outcomes]

    inbox: asyncio.Queue[int | None] = asyncio.Queue()

    async def worker() -> int:
        total = 0
        while (item := await inbox.get()) is not None:
            total += item
        return total

    task = asyncio.create_task(worker())
    for i in range(n):
        await inbox.put(i)
    await inbox.put(None)
    total = await task

    hanging = asyncio.create_task(never_finishes())
    await asyncio.sleep(0)
    hanging.cancel()
    try:
        await hanging
        cancelled = False
    except asyncio.CancelledError:
        cancelled = True

    try:
        await asyncio.wait_for(never_finishes(), timeout=0.01)
        timed_out = False
    except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11 on
        timed_out = True

    off_loop = await asyncio.to_thread(checksum, squares)
    return {
        "squares": squares,
        "outcomes": described,
        "queue_total": total,
        "cancelled": cancelled,
        "timed_out": timed_out,
        "checksum": off_loop,
    }


def loop_in_thread(n: int) -> int:
    """asyncio.run() in a thread of its own."""
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(asyncio.run(square_later(n))), name="loop-thread"
    )
    thread.start()
    thread.join()
    return result[0]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    report = {
        "word_counts": thread_pool(),
        "produced": producer_consumers(n),
        "pipeline": asyncio.run(pipeline(n)),
        "loop_in_thread": loop_in_thread(n),
    }
    for key, value in report.items():
        print(f"{key}: {value}")
    with open("report.json", "w") as out:
        json.dump(report, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
