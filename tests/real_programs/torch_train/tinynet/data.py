"""Random regression data from a fixed generator."""

from collections.abc import Iterator

import torch


def make_dataset(n: int, inputs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of a noisy nonlinear function of the inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, inputs, generator=generator)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=generator)
    return x, y


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled mini-batches."""
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), size):
        index = order[start : start + size]
        yield x[index], y[index]
