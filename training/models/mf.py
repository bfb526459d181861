"""Matrix factorisation (BPR-MF when trained with the BPR loss)."""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import TrainableRecommender


class MF(TrainableRecommender):
    """score(u, i) = <e_u, e_i>; embeddings initialised N(0, init_std²) (docs/methods.md#common-setup)."""

    family = "mf"

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.01):
        super().__init__(n_users, n_items, dim)
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight
