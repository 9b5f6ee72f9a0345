"""A toy model: a few layers, a forward pass and a loss."""

import math


class Layer:
    def __init__(self, index: int, width: int) -> None:
        self.index = index
        self.weights = [0.1 * (index + 1)] * width

    def forward(self, values: list[float]) -> list[float]:
        return [math.tanh(v * w) for v, w in zip(values, self.weights, strict=True)]


class TinyModel:
    def __init__(self, width: int, depth: int = 2) -> None:
        self.layers = [Layer(i, width) for i in range(depth)]

    def forward(self, values: list[float]) -> list[float]:
        for layer in self.layers:
            values = layer.forward(values)
        return values

    def loss(self, outputs: list[float]) -> float:
        return sum(o * o for o in outputs) / len(outputs)

    def step(self, batch: list[list[float]]) -> float:
        losses = [self.loss(self.forward(sample)) for sample in batch]
        return sum(losses) / len(losses)

    def checkpoint(self, name: str) -> None:
        raise OSError(f"no disk for {name} in this demo")
