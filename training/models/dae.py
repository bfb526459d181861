"""A denoising autoencoder recommender (CDAE / Mult-DAE family; the "AE" teacher of HetComp, docs/hetcomp.md).

The user is represented by what they interacted with, not by a free embedding:
 h_u = tanh( drop(x̂_u) · W + b ),   score(u, i) = ⟨h_u, q_i⟩ + c_i,
where x̂_u is the user's 0/1 training row scaled to unit L2 norm, ``drop`` is input dropout (each
training interaction is removed with probability ``dropout`` and the rest rescaled, during training
only — the "denoising" that keeps the model from learning the identity), W [n_items, d] the encoder,
q [n_items, d] the decoder and c the item biases. It is trained by the shared trainer with its
pairwise losses (one dropout draw per batch).

The model is **factorised**: ``representations`` returns [h_u, 1] and [q_i, c_i], so scoring,
evaluation and export work as for MF (after training, h_u is a fixed table). Like LightGCN it needs
the training interactions, set with :meth:`set_graph` whenever the model is built or loaded.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from training.models.base import TrainableRecommender


class DAE(TrainableRecommender):
    """Denoising autoencoder over the users' training rows (see the module docstring)."""

    family = "dae"

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.01, dropout: float = 0.5):
        super().__init__(n_users, n_items, dim)
        self.dropout_p = float(dropout)
        self.encoder = nn.Embedding(n_items, dim)
        self.encoder_bias = nn.Parameter(torch.zeros(dim))
        self.decoder = nn.Embedding(n_items, dim)
        self.item_bias = nn.Parameter(torch.zeros(n_items, 1))
        nn.init.normal_(self.encoder.weight, std=init_std)
        nn.init.normal_(self.decoder.weight, std=init_std)
        self._rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def set_graph(self, train: sp.csr_matrix) -> None:
        """Stores the training rows, L2-normalised (CSR pieces, not a parameter)."""
        m = sp.csr_matrix(train, dtype=np.float32)
        m.sort_indices()
        norms = np.sqrt(np.maximum(np.diff(m.indptr), 1)).astype(np.float32)
        values = m.data / np.repeat(norms, np.diff(m.indptr))
        self._rows = (torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)), torch.from_numpy(values))

    def _inputs(self) -> torch.Tensor:
        if self._rows is None:
            raise RuntimeError("DAE.set_graph(train) must be called before scoring")
        indptr, indices, values = self._rows
        if self.training and self.dropout_p > 0:
            keep = torch.rand(values.shape) >= self.dropout_p
            values = values * keep / (1.0 - self.dropout_p)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(indptr, indices, values, size=(self.n_users, self.n_items), check_invariants=False)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User [n_users, d+1] = [h_u, 1] and item [n_items, d+1] = [q_i, c_i]."""
        h = torch.tanh(self._inputs() @ self.encoder.weight + self.encoder_bias)
        user = torch.cat([h, torch.ones(self.n_users, 1, dtype=h.dtype)], dim=1)
        item = torch.cat([self.decoder.weight, self.item_bias], dim=1)
        return user, item

    def constructor_args(self) -> dict:
        return {**super().constructor_args(), "dropout": self.dropout_p}
