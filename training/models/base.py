"""The small interface every trainable recommender (teacher or student) implements."""

from __future__ import annotations

import torch
from torch import nn

from training.models.gather_dot import gather_dot
from training.models.row_grads import rows


class TrainableRecommender(nn.Module):
    """A trainable (torch) recommender over ``n_users`` × ``n_items`` (indices, not external ids);
    the service's served model is :class:`service.recommender.Recommender`, built from its export.

    Subclasses implement :meth:`representations` and, when scores are not inner products of those
    representations, override :meth:`score_pairs` / :meth:`score_candidates` / :meth:`score_all`.

    ``factorised`` is True when ``score(u, i) = <user_repr[u], item_repr[i]>`` exactly (MF,
    LightGCN): such models export as a user tower plus an item index. Other models (NeuMF) export
    as a scorer over candidate items.
    """

    family: str = ""
    factorised: bool = True

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user [n_users, d] and item [n_items, d] vectors (the latent knowledge KD methods use).

        For factorised models these define the scores; for NeuMF they are the concatenated GMF and
        MLP embeddings (its latent representation, as DE/TD use it).
        """
        raise NotImplementedError

    def shared_representations(self, reps: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables below any output tower (what ConCF's auxiliary heads share), given the
        representations ``reps`` just computed; by default ``reps`` themselves (nothing is recomputed)."""
        return reps

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor, reps=None) -> torch.Tensor:
        """Scores of (users[b], items[b]) pairs → [b]. ``reps`` may pass precomputed representations."""
        u, i = reps if reps is not None else self.representations()
        return (rows(u, users) * rows(i, items)).sum(-1)

    def score_candidates(self, users: torch.Tensor, items: torch.Tensor, reps=None) -> torch.Tensor:
        """Scores of users[b] against candidate items[b, c] → [b, c]."""
        u, i = reps if reps is not None else self.representations()
        return gather_dot(rows(u, users), i, items)

    def score_all(self, users: torch.Tensor, reps=None) -> torch.Tensor:
        """Scores of users[b] against every item → [b, n_items]."""
        u, i = reps if reps is not None else self.representations()
        return rows(u, users) @ i.T

    def num_parameters(self) -> int:
        """Trainable parameters used at inference time."""
        return sum(p.numel() for p in self.parameters())

    def constructor_args(self) -> dict:
        """The keyword arguments that rebuild this model with :func:`training.models.build_model`."""
        return {"family": self.family, "n_users": self.n_users, "n_items": self.n_items, "dim": self.dim}
