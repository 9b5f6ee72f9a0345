"""One epoch of training and an evaluation."""

import torch
from torch import nn

from tinynet.data import batches


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """Mean training loss of one pass over shuffled batches."""
    model.train()
    total, count = 0.0, 0
    for xb, yb in batches(x, y, batch_size, generator):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / count


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return nn.functional.mse_loss(model(x), y).item()
