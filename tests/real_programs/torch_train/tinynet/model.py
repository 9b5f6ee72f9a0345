"""The model: a 2-hidden-layer MLP with a residual block."""

import torch
from torch import nn


class Block(nn.Module):
    """Linear + ReLU with a residual connection."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.linear(x))


class TinyMLP(nn.Module):
    def __init__(self, inputs: int, width: int, outputs: int, blocks: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(blocks))
        self.head = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)
