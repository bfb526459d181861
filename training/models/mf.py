"""Matrix factorisation (BPR-MF when trained with the BPR loss), optionally with an output tower."""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import TrainableRecommender
from training.models.tower import Tower


class MF(TrainableRecommender):
    """score(u, i) = <e_u, e_i>; embeddings initialised N(0, init_std²) (docs/methods.md#common-setup).

    ``tower="mlp"``: score(u, i) = <t(e_u), t(e_i)> with t a :class:`~training.models.tower.Tower`
    (d → d/2 → d/4 with ``dropout``, then a linear layer) shared by users and items; the
    representations (and the export) are then the d/4-dimensional tower outputs.
    """

    family = "mf"

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.01, tower: str = "none", dropout: float = 0.0):
        super().__init__(n_users, n_items, dim)
        if tower not in ("none", "mlp"):
            raise ValueError(f"unknown MF tower {tower!r}; known: 'none', 'mlp'")
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        self.dropout = dropout
        self.tower = Tower(dim, dropout) if tower == "mlp" else None

    def shared_representations(self, reps: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i = self.user_emb.weight, self.item_emb.weight
        if self.tower is None:
            return u, i
        return self.tower(u), self.tower(i)

    def constructor_args(self) -> dict:
        args = super().constructor_args()
        return args if self.tower is None else {**args, "tower": "mlp", "dropout": self.dropout}
