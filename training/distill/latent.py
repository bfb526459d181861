"""Latent-knowledge distillation: DE, PHR and FitNet-style hint regression (docs/methods.md#de-distillation-experts, #phr-personalized-hint-regression).

All three regress the frozen teacher representation e_t(x) from the student's e_s(x) through a
training-only bridge, on the entities of the batch. With U_b, P_b, N_b the unique users, positive
items and negative items of the batch, the batch loss is (docs/methods.md#de-distillation-experts)

    L(batch) = Σ_{u ∈ U_b} ℓ(u) + ½ [ Σ_{i ∈ P_b} ℓ(i) + Σ_{j ∈ N_b} ℓ(j) ]

(a sum, as in the official code: the λ values were tuned for batch 1024 with this scale).
The student representations are ``student.representations()`` (MF/LightGCN: the final embeddings;
NeuMF: the concatenated GMF and MLP embeddings), so these methods work for every family.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from training.distill.base import Batch, KDContext, KDMethod, P
from training.distill.common import annealed_temperature
from training.distill.experts import ExpertBank, expert_hidden
from training.distill.registry import register
from training.distill.teacher_protocol import EmbeddingTeacher, require_teacher
from training.models.row_grads import rows


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def batch_users_items(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U_b, items of P_b ∪ N_b, item weights): the entities of the latent losses and their weights.

    An item's weight is ½·[i ∈ P_b] + ½·[i ∈ N_b], so Σ_i w_i ℓ(i) = ½ (Σ_{P_b} ℓ + Σ_{N_b} ℓ) while
    an item that is both a positive and a negative is evaluated once.
    """
    pos, neg = batch.pos.unique(), batch.neg.reshape(-1).unique()
    items, counts = torch.unique(torch.cat([pos, neg]), return_counts=True)
    return batch.users.unique(), items, 0.5 * counts.float()


def student_dims(student) -> tuple[int, int]:
    """Width of the student's user and item representations."""
    with torch.no_grad():
        u, i = student.representations()
    return int(u.shape[1]), int(i.shape[1])


class TeacherTables(KDMethod[P]):
    """Base of the methods that read the frozen teacher tables (kept as non-persistent buffers,
    so they are not written into every checkpoint)."""

    def _load_teacher(self, ctx: KDContext) -> None:
        user, item = require_teacher(self.name, ctx.teacher, EmbeddingTeacher).embeddings()
        if user.shape[0] != ctx.dataset.n_users or item.shape[0] != ctx.dataset.n_items:
            raise ValueError(f"{self.name}: teacher tables {user.shape[0]}×{item.shape[0]} do not match the data {ctx.dataset.n_users}×{ctx.dataset.n_items}")
        self.register_buffer("t_user", torch.as_tensor(np.asarray(user, dtype=np.float32)), persistent=False)
        self.register_buffer("t_item", torch.as_tensor(np.asarray(item, dtype=np.float32)), persistent=False)


# ----------------------------------------------------------------------------------------- DE
class DEParams(Params):
    experts: int = Field(30, ge=1, description="M, experts per side")
    tau_start: float = Field(1.0, gt=0, description="Gumbel temperature at epoch 0")
    tau_end: float = Field(1e-10, gt=0, description="final (minimum) temperature")
    anneal_epochs: int | None = Field(None, ge=1, description="P in τ(e) = τ0 (τP/τ0)^{e/P}; default train.epochs")
    hidden: int | None = Field(None, ge=1, description="expert hidden width; default ⌊(d_s + d_t)/2⌋")
    active_mass: float = Field(0.99, gt=0, le=1, description="evaluate the experts holding this share of the selection weight")
    max_active: int | None = Field(4, ge=1, description="at most this many experts per entity (None: all)")


@register
class DE(TeacherTables[DEParams]):
    """Distillation Experts (Kang et al., "DE-RRD", CIKM 2020; docs/methods.md#de-distillation-experts).

    Per side (users, items), M experts E_m: d_s → ⌊(d_s+d_t)/2⌋ → d_t and a selection network
    α_x = softmax(V e_t(x)); the Gumbel-softmax s_x = softmax((log(α_x+1e-10) + g)/τ) routes each
    entity to (effectively) one expert:

        ℓ(x) = ‖ e_t(x) − Σ_m s_{x,m} E_m(e_s(x)) ‖²₂

    τ(e) = τ0 (τP/τ0)^{e/P}: 1 at epoch 0, 0.1 at e = P/10 with the defaults (τP = 1e-10, P = 1000).
    Defaults (official main_DE.py): M = 30, λ = 0.01. Experts and selection networks are training-
    only. Our deviation: per entity we evaluate only the experts holding ``active_mass`` of the
    selection weight (at most ``max_active``, renormalised); exact once the selection is one-hot
    (from about epoch 100), a truncated mixture before (see ``training.distill.experts``).
    """

    name = "de"
    default_weight = 0.01
    Params = DEParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self.p = p
        self._load_teacher(ctx)
        d_su, d_si = student_dims(ctx.student)
        d_t = self.t_user.shape[1]
        self.user_bank = ExpertBank(p.experts, d_su, d_t, expert_hidden(d_su, d_t, p.hidden), p.active_mass, p.max_active)
        self.item_bank = ExpertBank(p.experts, d_si, d_t, expert_hidden(d_si, d_t, p.hidden), p.active_mass, p.max_active)
        self.horizon = p.anneal_epochs or ctx.max_epochs
        self.tau = p.tau_start

    def on_epoch_start(self, epoch: int, student) -> None:
        self.tau = annealed_temperature(epoch, self.p.tau_start, self.p.tau_end, self.horizon)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users, items, w = batch_users_items(batch)
        s_user, s_item = reps
        return {
            "user": self.user_bank.loss(rows(s_user, users), self.t_user[users], self.tau),
            "item": self.item_bank.loss(rows(s_item, items), self.t_item[items], self.tau, w),
        }

    def log_state(self) -> dict:
        state = {"tau": self.tau}
        for side, bank in (("user", self.user_bank), ("item", self.item_bank)):
            state.update({f"{side}_{k}": round(v, 4) for k, v in bank.stats.items()})
        return state


# ---------------------------------------------------------------------------------------- PHR
class PHRParams(Params):
    hidden: int | None = Field(None, ge=1, description="personalization MLP hidden width; default (d_t + d_t·d_s)/2")
    enrich: bool = Field(True, description="v_x = ½(e_t(x) + mean of its training neighbours' e_t)")


def neighbour_mean(adj: sp.csr_matrix, table: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Row-wise mean of ``table`` over each row's neighbours in ``adj``; rows without neighbours get ``own``."""
    deg = np.asarray(adj.sum(axis=1)).ravel()
    mean = np.asarray(adj @ table) / np.maximum(deg, 1)[:, None]
    return np.where(deg[:, None] > 0, mean, own).astype(np.float32)


@register
class PHR(TeacherTables[PHRParams]):
    """Personalized Hint Regression (Kang et al., Knowledge-Based Systems 239, 2022; docs/methods.md#phr-personalized-hint-regression).

    A personalization network p maps the (enriched) teacher view v_x to a per-entity bridge
    Θ_x ∈ R^{d_t × d_s}; v_u = ½(e_t(u) + mean_{i ∈ N(u)} e_t(i)) and symmetrically for items:

        ℓ(x) = ‖ e_t(x) − Θ_x e_s(x) ‖²₂,   Θ_x = reshape(p(v_x)),   p: d_t → h → d_t·d_s

    Users and items have separate networks. No official code: the formulation follows the
    HyperKDMA description; the enrichment uses the full training neighbourhood (the third-party code
    restricts it to the batch and switches it off). λ = 0.01. Costly: p has ≈ 8.8 M parameters for
    200 → 20 and is evaluated for every entity of the batch.
    """

    name = "phr"
    default_weight = 0.01
    Params = PHRParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self._load_teacher(ctx)
        d_su, d_si = student_dims(ctx.student)
        d_t = self.t_user.shape[1]
        tu, ti = self.t_user.numpy(), self.t_item.numpy()
        train = ctx.dataset.train.tocsr().astype(np.float32)
        if p.enrich:
            vu = 0.5 * (tu + neighbour_mean(train, ti, tu))
            vi = 0.5 * (ti + neighbour_mean(train.T.tocsr(), tu, ti))
        else:
            vu, vi = tu, ti
        self.register_buffer("v_user", torch.as_tensor(vu, dtype=torch.float32), persistent=False)
        self.register_buffer("v_item", torch.as_tensor(vi, dtype=torch.float32), persistent=False)
        self.d_su, self.d_si, self.d_t = d_su, d_si, d_t

        def net(d_s: int) -> nn.Module:
            h = p.hidden or (d_t + d_t * d_s) // 2
            return nn.Sequential(nn.Linear(d_t, h), nn.ReLU(), nn.Linear(h, d_t * d_s))

        self.user_net, self.item_net = net(d_su), net(d_si)

    @staticmethod
    def _loss(net: nn.Module, v: torch.Tensor, s: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
        theta = net(v).view(v.shape[0], t.shape[1], s.shape[1])  # [n, d_t, d_s]
        pred = torch.bmm(theta, s.unsqueeze(-1)).squeeze(-1)
        return (((t - pred) ** 2).sum(1) * weight).sum()

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users, items, w = batch_users_items(batch)
        s_user, s_item = reps
        return {
            "user": self._loss(self.user_net, self.v_user[users], rows(s_user, users), self.t_user[users]),
            "item": self._loss(self.item_net, self.v_item[items], rows(s_item, items), self.t_item[items], w),
        }


# ------------------------------------------------------------------------------------- FitNet
class FitNetParams(Params):
    projector: Literal["linear", "mlp"] = Field("linear", description="one shared linear map, or d_s → (d_s+d_t)/2 → d_t")


@register
class FitNet(TeacherTables[FitNetParams]):
    """FitNet-style hint regression (Romero et al., ICLR 2015), the TD paper's "FitNet" baseline.

    One shared projection f per side (no experts, no selection):

        ℓ(x) = ‖ e_t(x) − f(e_s(x)) ‖²₂

    on the same entities and weights as DE. λ = 0.01 (DE's default; the TD paper does not list one).
    """

    name = "fitnet"
    default_weight = 0.01
    Params = FitNetParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self._load_teacher(ctx)
        d_su, d_si = student_dims(ctx.student)
        d_t = self.t_user.shape[1]

        def proj(d_s: int) -> nn.Module:
            if p.projector == "linear":
                return nn.Linear(d_s, d_t)
            h = expert_hidden(d_s, d_t, None)
            return nn.Sequential(nn.Linear(d_s, h), nn.ReLU(), nn.Linear(h, d_t))

        self.user_proj, self.item_proj = proj(d_su), proj(d_si)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users, items, w = batch_users_items(batch)
        s_user, s_item = reps
        return {
            "user": ((self.t_user[users] - self.user_proj(rows(s_user, users))) ** 2).sum(),
            "item": (((self.t_item[items] - self.item_proj(rows(s_item, items))) ** 2).sum(1) * w).sum(),
        }
