"""Adapts a torch :class:`~training.models.base.TrainableRecommender` to the numpy ``Scorer`` protocol."""

from __future__ import annotations

import numpy as np
import torch

from training.models.base import TrainableRecommender


class TorchScorer:
    """Scores with a frozen snapshot of the model's representations (computed once, no grad)."""

    def __init__(self, model: TrainableRecommender):
        self.model = model
        self.n_items = model.n_items
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.reps = tuple(r.detach() for r in model.representations())
        model.train(was_training)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.score_all(torch.as_tensor(users, dtype=torch.long), reps=self.reps).numpy()

    def score_candidates(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            u = torch.as_tensor(users, dtype=torch.long)
            i = torch.as_tensor(items, dtype=torch.long)
            return self.model.score_candidates(u, i, reps=self.reps).numpy()
