"""Code that own_hooks.py measures with coverage.py, in the main thread and in a thread."""

import threading


def classify(n: int) -> str:
    """A few branches, so that the executed lines depend on the input."""
    if n < 0:
        return "negative"
    if n % 2:
        return "odd"
    return "even"


def parse_all(words: list[str]) -> list[int]:
    """Parse integers, skipping the words that are not (an exception per word)."""
    numbers = []
    for word in words:
        try:
            numbers.append(int(word))
        except ValueError:
            continue
    return numbers


def scaled(values: list[int], factor: int) -> list[int]:
    """Only ever called in the thread that in_a_thread() starts."""
    result = []
    for value in values:
        result.append(value * factor)
    return result


def in_a_thread(values: list[int]) -> list[int]:
    """scaled() run in a thread of its own."""
    results: list[list[int]] = []
    worker = threading.Thread(target=lambda: results.append(scaled(values, 3)))
    worker.start()
    worker.join()
    return results[0]


def never_called() -> None:
    """Stays uncovered."""
    print("unreachable")
