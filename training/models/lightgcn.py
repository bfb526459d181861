"""LightGCN (He et al., SIGIR 2020): linear propagation over the normalised user–item graph."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from training.models.base import TrainableRecommender


def normalized_adjacency(train: sp.csr_matrix) -> torch.Tensor:
    """D^{-1/2} A D^{-1/2} of the bipartite graph A = [[0, R], [Rᵀ, 0]] as a sparse CSR tensor."""
    n_users, n_items = train.shape
    r = train.tocoo()
    rows = np.concatenate([r.row, r.col + n_users])
    cols = np.concatenate([r.col + n_users, r.row])
    deg = np.bincount(rows, minlength=n_users + n_items).astype(np.float64)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1)), 0.0)
    vals = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    adj = sp.csr_matrix((vals, (rows, cols)), shape=(n_users + n_items,) * 2)
    adj.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what we want here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(adj.indptr.astype(np.int64)),
            torch.from_numpy(adj.indices.astype(np.int64)),
            torch.from_numpy(adj.data),
            size=adj.shape,
            check_invariants=False,
        )


class LightGCN(TrainableRecommender):
    """E^{(0)} = embeddings; E^{(l+1)} = Â E^{(l)}; final = mean_l E^{(l)}; score = <final_u, final_i>.

    The graph is the training interactions only; it is a buffer set with :meth:`set_graph` (and
    rebuilt from the dataset whenever the model is loaded), never a parameter.
    """

    family = "lightgcn"

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int = 3, init_std: float = 0.1):
        super().__init__(n_users, n_items, dim)
        self.layers = layers
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)
        self.adj: torch.Tensor | None = None

    def set_graph(self, train: sp.csr_matrix) -> None:
        self.adj = normalized_adjacency(train)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.adj is None:
            raise RuntimeError("LightGCN.set_graph(train) must be called before scoring")
        x = self.embedding.weight
        total = x
        for _ in range(self.layers):
            x = self.adj @ x
            total = total + x
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users :]

    def constructor_args(self) -> dict:
        return {**super().constructor_args(), "layers": self.layers}
