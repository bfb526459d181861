"""The heads of ConCF (Kang et al., WWW 2022): one-class objectives over shared user/item embeddings.

Every auxiliary head maps the shared embeddings through its own small network; the target head has
none of its own: it scores the student's representations (the shared embeddings themselves, or their
output tower when the student has one, ``model.tower: mlp``). Every head scores a pair with one
bilinear form,

    s(u, i) = ⟨p(u) ⊙ a, p(i)⟩ + b − γ (‖p(u)‖² + ‖p(i)‖²),

which covers all of them: the target BPR head and the multinomial heads take a = 1, b = 0, γ = 0
(a plain inner product); the BCE and MSE heads learn a and b (a linear layer on the Hadamard
product); the CML head projects into the unit ball and takes a = 2, γ = 1, so s = −‖p(u) − p(i)‖².
One form means one implementation for pairs, candidate lists and chunks of the full matrix.

Each loss is a **sum** over the batch, like every other loss in distillrec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.gather_dot import gather_dot
from training.models.tower import bottom_mlp

#: The heads in a fixed order; the first is the target head (kept at export).
HEAD_KINDS = ("bpr", "cml", "bce", "mse", "multinomial", "item_multinomial")

#: Multinomial logits (and the ranking scores of the distillation) are clamped to ±this.
SCORE_CLAMP = 40.0


class Head(nn.Module):
    """One objective's scorer. ``kind`` is one of :data:`HEAD_KINDS`; the ``bpr`` head has no network."""

    def __init__(self, kind: str, dim: int, dropout: float = 0.1):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown ConCF head {kind!r}; known: {HEAD_KINDS}")
        self.kind = kind
        self.net = None
        if kind != "bpr":
            self.net = bottom_mlp(dim, dropout)
        if kind in ("bce", "mse"):
            self.a = nn.Parameter(torch.ones(max(1, dim // 4)))
            self.b = nn.Parameter(torch.zeros(()))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The head's view of shared embeddings x [..., d]; CML's lies in the unit ball."""
        if self.net is not None:
            x = self.net(x)
        if self.kind == "cml":
            x = x / x.norm(dim=-1, keepdim=True).clamp(min=1.0)
        return x

    def _form(self) -> tuple[torch.Tensor | float, torch.Tensor | float, float]:
        if self.kind in ("bce", "mse"):
            return self.a, self.b, 0.0
        if self.kind == "cml":
            return 2.0, 0.0, 1.0
        return 1.0, 0.0, 0.0

    def pairs(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Scores of projected u [..., d'] and i [..., d'] (broadcast) → [...]."""
        a, b, g = self._form()
        s = (u * a * i).sum(-1) + b
        return s - g * ((u * u).sum(-1) + (i * i).sum(-1)) if g else s

    def matrix(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Scores of projected u [m, d'] against projected i [n, d'] → [m, n]."""
        a, b, g = self._form()
        s = (u * a) @ i.T + b
        return s - g * ((u * u).sum(-1)[:, None] + (i * i).sum(-1)[None, :]) if g else s

    def candidates(self, u: torch.Tensor, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scores of projected u [b, d'] against rows ``idx`` [b, c] of projected items ``table`` [n, d']
        → [b, c] (through :func:`gather_dot`: no [b, c, d'] tensor, a cheap backward to the table)."""
        a, b, g = self._form()
        s = gather_dot(u * a, table, idx) + b
        return s - g * ((u * u).sum(-1)[:, None] + (table * table).sum(-1)[idx]) if g else s

    def ranking_scores(self, s: torch.Tensor) -> torch.Tensor:
        """Scores as the listwise distillation sees them: CML's −dist² ×10, all clamped to ±40."""
        return (10.0 * s if self.kind == "cml" else s).clamp(-SCORE_CLAMP, SCORE_CLAMP)


# ------------------------------------------------------------------------------------ losses
def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """−Σ log σ(s_ui − s_uj); pos [b], neg [b, n]."""
    return -F.logsigmoid(pos[:, None] - neg).sum()


def cml_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Σ max(0, margin + d²(u, i) − d²(u, j)) with scores s = −d²; pos [b], neg [b, n]."""
    return F.relu(margin - pos[:, None] + neg).sum()


def bce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Σ −log σ(s_ui) + Σ −log(1 − σ(s_uj)) (binary cross-entropy with logits)."""
    return F.softplus(-pos).sum() + F.softplus(neg).sum()


def mse_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Σ (s_ui − 1)² + Σ s_uj² (regression of the 0/1 interactions)."""
    return ((pos - 1.0) ** 2).sum() + (neg**2).sum()


def multinomial_loss(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """−Σ_b log softmax(logits[rows[b]])[cols[b]]: the multinomial likelihood of the observed pairs.

    ``logits`` [m, n] (clamped to ±40) are one row per distinct user (item side: per distinct item)
    against every item (user); ``rows`` / ``cols`` index the batch's observed pairs into it.
    """
    logp = torch.log_softmax(logits.clamp(-SCORE_CLAMP, SCORE_CLAMP), dim=-1)
    return -logp[rows, cols].sum()


PAIR_LOSSES = {"bpr": bpr_loss, "cml": cml_loss, "bce": bce_loss, "mse": mse_loss}
