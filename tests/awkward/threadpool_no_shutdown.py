"""A ThreadPoolExecutor never shut down: Python joins its threads at exit."""

from concurrent.futures import ThreadPoolExecutor


def work(x):
    return x + 1


executor = ThreadPoolExecutor(max_workers=2)
print(sorted(executor.map(work, range(5))))
future = executor.submit(work, 41)
print(future.result())
