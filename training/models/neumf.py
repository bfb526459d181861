"""NeuMF (He et al., WWW 2017): GMF ⊕ MLP towers and a final linear layer; not factorised."""

from __future__ import annotations

import torch
from torch import nn

from training.models.base import TrainableRecommender


class NeuMF(TrainableRecommender):
    """score(u, i) = wᵀ [ p_u ⊙ q_i ; MLP([p'_u ; q'_i]) ] + b.

    ``dim`` is the size of each embedding table (GMF and MLP). The MLP maps 2·dim → dim → dim/2 →
    … (``layers`` layers, halving, ReLU). The first MLP layer is split into a user and an item half
    so that scoring many items for one user computes the user half once.
    """

    family = "neumf"
    factorised = False

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int = 2, init_std: float = 0.01, dropout: float = 0.0):
        super().__init__(n_users, n_items, dim)
        self.layers = max(1, layers)
        self.dropout_p = dropout
        self.gmf_user = nn.Embedding(n_users, dim)
        self.gmf_item = nn.Embedding(n_items, dim)
        self.mlp_user = nn.Embedding(n_users, dim)
        self.mlp_item = nn.Embedding(n_items, dim)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=init_std)
        self.first_user = nn.Linear(dim, dim, bias=True)
        self.first_item = nn.Linear(dim, dim, bias=False)
        widths = [max(1, dim // (2**k)) for k in range(self.layers)]  # dim, dim/2, ...
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim + widths[-1], 1)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.cat([self.gmf_user.weight, self.mlp_user.weight], dim=1),
            torch.cat([self.gmf_item.weight, self.mlp_item.weight], dim=1),
        )

    def _head(self, gmf: torch.Tensor, mlp_pre: torch.Tensor) -> torch.Tensor:
        h = torch.relu(mlp_pre)
        for layer in self.hidden:
            h = torch.relu(layer(self.dropout(h)))
        return self.out(torch.cat([gmf, h], dim=-1)).squeeze(-1)

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor, reps=None) -> torch.Tensor:
        gmf = self.gmf_user(users) * self.gmf_item(items)
        pre = self.first_user(self.mlp_user(users)) + self.first_item(self.mlp_item(items))
        return self._head(gmf, pre)

    def score_candidates(self, users: torch.Tensor, items: torch.Tensor, reps=None) -> torch.Tensor:
        gmf = self.gmf_user(users).unsqueeze(1) * self.gmf_item(items)
        pre = self.first_user(self.mlp_user(users)).unsqueeze(1) + self.first_item(self.mlp_item(items))
        return self._head(gmf, pre)

    def score_all(self, users: torch.Tensor, reps=None) -> torch.Tensor:
        # [b, n_items, dim] intermediates: chunk users so one chunk stays around 64 MB.
        item_pre = self.first_item(self.mlp_item.weight)
        step = max(1, (1 << 24) // max(1, self.n_items * self.dim))
        out = []
        for start in range(0, len(users), step):
            u = users[start : start + step]
            gmf = self.gmf_user(u).unsqueeze(1) * self.gmf_item.weight.unsqueeze(0)
            pre = self.first_user(self.mlp_user(u)).unsqueeze(1) + item_pre.unsqueeze(0)
            out.append(self._head(gmf, pre))
        return torch.cat(out) if out else item_pre.new_zeros((0, self.n_items))

    def constructor_args(self) -> dict:
        return {**super().constructor_args(), "layers": self.layers, "dropout": self.dropout_p}
