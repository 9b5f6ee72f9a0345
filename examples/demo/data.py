"""A batch loader that prepares batches in a background thread."""

import queue
import random
import threading


def make_sample(rng: random.Random, width: int = 4) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(width)]


class BatchLoader:
    def __init__(self, batches: int, batch_size: int, seed: int = 0) -> None:
        self.batches = batches
        self.batch_size = batch_size
        self.seed = seed

    def _produce(self, out: queue.Queue) -> None:
        rng = random.Random(self.seed)
        for _ in range(self.batches):
            out.put([make_sample(rng) for _ in range(self.batch_size)])
        out.put(None)

    def __iter__(self):
        ready: queue.Queue = queue.Queue(maxsize=2)
        worker = threading.Thread(target=self._produce, args=(ready,), name="loader")
        worker.start()
        while (batch := ready.get()) is not None:
            yield batch
        worker.join()
