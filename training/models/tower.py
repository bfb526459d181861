"""An output tower over an embedding table: the bottom network of ConCF's heads (Kang et al., WWW 2022).

    tower(x) = L(W₂ · dropout(ReLU(W₁ x + b₁)) + b₂),   d → d/2 → d/4, then a linear layer L: d/4 → d/4.

Applied to the user and the item embeddings alike, it keeps a model factorised (score = ⟨tower(e_u),
tower(e_i)⟩), so such a model exports as precomputed user and item vectors of dimension d/4.
"""

from __future__ import annotations

import torch
from torch import nn


def bottom_mlp(dim: int, dropout: float) -> nn.Sequential:
    """d → d/2 → d/4 with a ReLU and dropout between the two layers (each at least 1 wide)."""
    half, quarter = max(1, dim // 2), max(1, dim // 4)
    return nn.Sequential(nn.Linear(dim, half), nn.ReLU(), nn.Dropout(dropout), nn.Linear(half, quarter))


class Tower(nn.Module):
    """The bottom MLP followed by a linear layer (the scorer of ConCF's BPR head); ``out_dim`` = d/4."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = bottom_mlp(dim, dropout)
        self.out_dim = max(1, dim // 4)
        self.linear = nn.Linear(self.out_dim, self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mlp(x))
