"""Topology distillation: FTD and HTD (Kang et al., "Topology Distillation for Recommender
System", KDD 2021; docs/methods.md#ftd-and-htd-topology-distillation).

Both work on the batch entity set B = uniq(batch users) ∪ uniq(batch positive ∪ negative items),
stacked into E_t [b, d_t] (teacher, frozen) and E_s [b, d_s] (student), and on cosine relations
A = cos(E, E). FTD matches every relation; HTD matches relations hierarchically through
preference groups found by a DE-style group assignment.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from training.distill.base import Batch, KDContext
from training.distill.common import annealed_temperature, cosine_matrix
from training.distill.experts import ExpertBank, expert_hidden
from training.distill.latent import Params, TeacherTables, student_dims
from training.distill.registry import register


def batch_entity_set(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique users, unique items of positives ∪ negatives) — the entity set B of TD."""
    return batch.users.unique(), torch.cat([batch.pos, batch.neg.reshape(-1)]).unique()


# ---------------------------------------------------------------------------------------- FTD
@register
class FTD(TeacherTables[None]):
    """Full Topology Distillation (Kang et al., "Topology Distillation for Recommender System", KDD 2021; docs/methods.md#ftd-and-htd-topology-distillation).

        L_FTD = ‖ cos(E_t, E_t) − cos(E_s, E_s) ‖²_F

    over all user–user, item–item and user–item pairs of B (the diagonal contributes 0).
    λ_TD = 1e-3 (official). No trainable parts.

    Computed without the b × b matrices: with N the row-normalised E (so cos(E, E) = N Nᵀ),
    ‖N_t N_tᵀ − N_s N_sᵀ‖²_F = ‖N_tᵀN_t‖²_F − 2 ‖N_tᵀN_s‖²_F + ‖N_sᵀN_s‖²_F, an exact identity that
    costs O(b d²) instead of O(b² d) (b ≈ 3k entities per batch of 1024); the small Gram
    matrices are accumulated in float64.
    """

    name = "ftd"
    default_weight = 1e-3

    def setup(self, ctx: KDContext) -> None:
        self._load_teacher(ctx)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users, items = batch_entity_set(batch)
        n_s = F.normalize(torch.cat([reps[0][users], reps[1][items]]), dim=1).double()
        with torch.no_grad():
            n_t = F.normalize(torch.cat([self.t_user[users], self.t_item[items]]), dim=1).double()
            tt = (n_t.T @ n_t).square().sum()
        loss = tt - 2 * (n_t.T @ n_s).square().sum() + (n_s.T @ n_s).square().sum()
        return {"": loss.float()}


# ---------------------------------------------------------------------------------------- HTD
class _SameGroupRelations(torch.autograd.Function):
    """Σ_{j,k: a_t(j,k) > 0} (⟨s_j, s_k⟩ − a_t(j,k))² for one group block: s [n, d] (row-normalised
    student rows), a_t [n, n] (teacher cosines, no gradient).

    The masked difference D is symmetric, so ∂/∂s = 2 (D + Dᵀ) s = 4 D s: one matmul in the backward,
    and the forward keeps D alone (no autograd graph over the n × n matrices).
    """

    @staticmethod
    def forward(ctx, s, a_t):
        diff = torch.mm(s, s.T).sub_(a_t).masked_fill_(a_t <= 0, 0.0)
        ctx.save_for_backward(s, diff)
        flat = diff.view(-1)
        return torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, g):
        s, diff = ctx.saved_tensors
        return torch.mm(diff, s).mul_(4 * g), None


def entity_topology_loss(e_s: torch.Tensor, e_t: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Σ over same-group pairs with a positive teacher cosine of (cos_s − cos_t)² (HTD entity level).

    The pair set is the official code's mask (same group) ∧ (teacher cosine > 0), diagonal included
    (it contributes 0). Entities are sorted by group and each group's diagonal block n_g × n_g is
    computed on its own (at most 2K small matmuls per side), so the work is Σ_g n_g² · d, never b² · d,
    and nothing is gathered or padded.
    """
    order = torch.argsort(groups, stable=True)
    sizes = torch.unique_consecutive(groups[order], return_counts=True)[1].tolist()
    ns = F.normalize(e_s[order], dim=1)
    with torch.no_grad():
        nt = F.normalize(e_t[order], dim=1)
    total = e_s.new_zeros(())
    for s_g, t_g in zip(ns.split(sizes), nt.split(sizes), strict=True):
        with torch.no_grad():
            a_t = t_g @ t_g.T
        total = total + _SameGroupRelations.apply(s_g, a_t)
    return total


def kmeans_groups(x: torch.Tensor, k: int, rng: np.random.Generator, max_iter: int = 100) -> torch.Tensor:
    """Lloyd's K-means on the rows of x [n, d] → the cluster of each row [n] (long).

    Centroids start from k-means++ seeding with ``rng`` (each next seed a row drawn with probability
    ∝ its squared distance to the nearest seed so far); a cluster that empties is re-seeded with the
    row farthest from its centroid. Stops when no row changes cluster (or after ``max_iter``).
    """
    x = x.detach().double()
    n = x.shape[0]
    k = min(k, n)
    seeds = [int(rng.integers(n))]
    nearest = (x - x[seeds[0]]).square().sum(1)
    for _ in range(k - 1):
        p = nearest.numpy() / float(nearest.sum()) if float(nearest.sum()) > 0 else None
        seeds.append(int(rng.choice(n, p=p)))
        nearest = torch.minimum(nearest, (x - x[seeds[-1]]).square().sum(1))
    centroids = x[seeds]
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(max_iter):
        d2 = torch.cdist(x, centroids).square()
        new = d2.argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        own = d2.gather(1, labels[:, None]).squeeze(1)
        for c in torch.nonzero(torch.bincount(labels, minlength=k) == 0).flatten().tolist():
            far = int(own.argmax())
            labels[far], own[far] = c, -math.inf
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return labels


class HTDParams(Params):
    groups: int = Field(30, ge=1, description="K preference groups per side")
    assignment: Literal["adaptive", "kmeans"] = Field(
        "adaptive",
        description="adaptive: the group-assignment network trained by L_GA (the paper's HTD); kmeans: fixed K-means "
        "clusters of the teacher representations (the paper's ablation), the experts of L_GA routed by them",
    )
    gamma: float = Field(0.5, ge=0, le=1, description="L_HTD = γ L_TD + (1 − γ) L_GA")
    group_level: Literal["prototype-entity", "prototype-prototype"] = Field(
        "prototype-entity", description="official 'second' (Group(P,e)) or 'first' (Group(P,P))"
    )
    mask_own_group: bool = Field(False, description="exclude entities from their own group's prototype relations (the paper; the code does not)")
    tau_start: float = Field(1.0, gt=0)
    tau_end: float = Field(1e-10, gt=0)
    anneal_epochs: int | None = Field(None, ge=1, description="default train.epochs")
    hidden: int | None = Field(None, ge=1)
    active_mass: float = Field(0.99, gt=0, le=1)
    max_active: int | None = Field(4, ge=1)


@register
class HTD(TeacherTables[HTDParams]):
    """Hierarchical Topology Distillation (Kang et al., "Topology Distillation for Recommender System", KDD 2021; docs/methods.md#ftd-and-htd-topology-distillation).

    1. Group assignment per side: α_x = softmax(v(e_t(x))), hard group argmax α_x (item groups offset
       by K), soft z_x = Gumbel-softmax(α_x; τ) with τ annealed as in DE; L_GA is DE's loss with K
       experts: Σ_{x∈B} ‖e_t(x) − Σ_k z_{x,k} f_k(e_s(x))‖². With ``assignment: kmeans`` (the
       paper's ablation) the groups are instead fixed K-means clusters of the teacher rows, computed
       once at set-up, and z_x is their one-hot.
    2. Prototypes of the non-empty groups G: P = Z̃ᵀE (Z̃ the column-normalised one-hot groups), both
       computed without gradient (as in the code).
    3. Group level ("prototype-entity", official default): ‖cos(P_t, E_t) − cos(P_s, E_s)‖²_F, |G|×b.
    4. Entity level: Σ_{(j,k) same group, cos_t(j,k) > 0} (cos_s(j,k) − cos_t(j,k))².
    5. L_HTD = γ (group + entity) + (1 − γ) L_GA; the trainer adds λ_TD · L_HTD.

    Defaults (official notebook): K = 30, γ = 0.5, λ_TD = 1e-3. The returned terms are already
    γ-weighted: ``topology`` = γ L_TD, ``group_assignment`` = (1 − γ) L_GA.
    """

    name = "htd"
    default_weight = 1e-3
    Params = HTDParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self.p = p
        self._load_teacher(ctx)
        d_su, d_si = student_dims(ctx.student)
        if d_su != d_si:
            raise ValueError("htd: user and item representations must have the same width")
        d_t = self.t_user.shape[1]
        h = expert_hidden(d_su, d_t, p.hidden)
        adaptive = p.assignment == "adaptive"
        # fixed (one-hot) groups select exactly one expert per entity
        max_active = p.max_active if adaptive else 1
        self.user_bank = ExpertBank(p.groups, d_su, d_t, h, p.active_mass, max_active, gated=adaptive)
        self.item_bank = ExpertBank(p.groups, d_si, d_t, h, p.active_mass, max_active, gated=adaptive)
        self.horizon = p.anneal_epochs or ctx.max_epochs
        self.tau = p.tau_start
        self.group_counts = torch.zeros(2 * p.groups, dtype=torch.long)
        self.fixed_groups = None
        if not adaptive:
            self.fixed_groups = (kmeans_groups(self.t_user, p.groups, ctx.rng), kmeans_groups(self.t_item, p.groups, ctx.rng))

    def on_epoch_start(self, epoch: int, student) -> None:
        self.tau = annealed_temperature(epoch, self.p.tau_start, self.p.tau_end, self.horizon)
        self.group_counts.zero_()

    def group_level_loss(self, e_s: torch.Tensor, e_t: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        present, col = torch.unique(groups, return_inverse=True)
        z = F.one_hot(col, len(present)).float()  # [b, |G|]
        with torch.no_grad():
            zn = z / z.sum(0, keepdim=True)
            p_t = zn.T @ e_t
            p_s = zn.T @ e_s.detach()
        if self.p.group_level == "prototype-prototype":
            return ((cosine_matrix(p_t, p_t) - cosine_matrix(p_s, p_s)) ** 2).sum()
        with torch.no_grad():
            h_t = cosine_matrix(p_t, e_t)
        diff = (h_t - cosine_matrix(p_s, e_s)) ** 2
        if self.p.mask_own_group:
            diff = diff * (1 - z.T)
        return diff.sum()

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users, items = batch_entity_set(batch)
        su, si = reps[0][users], reps[1][items]
        tu, ti = self.t_user[users], self.t_item[items]
        if self.fixed_groups is None:
            s_u, g_u = self.user_bank.selection(tu, self.tau)
            s_i, g_i = self.item_bank.selection(ti, self.tau)
        else:
            g_u, g_i = self.fixed_groups[0][users], self.fixed_groups[1][items]
            s_u, s_i = (F.one_hot(g, self.p.groups).to(tu.dtype) for g in (g_u, g_i))
        ga = self.user_bank.loss_for_selection(su, tu, s_u) + self.item_bank.loss_for_selection(si, ti, s_i)
        groups = torch.cat([g_u, g_i + self.p.groups])
        self.group_counts += torch.bincount(groups, minlength=2 * self.p.groups).cpu()
        e_s, e_t = torch.cat([su, si]), torch.cat([tu, ti])
        td = self.group_level_loss(e_s, e_t, groups) + entity_topology_loss(e_s, e_t, groups)
        return {"topology": self.p.gamma * td, "group_assignment": (1 - self.p.gamma) * ga}

    def log_state(self) -> dict:
        """τ (adaptive assignment only), the expert bank's sparsity, and per side how many groups the
        epoch's batch entities fell into: ``groups_used`` and ``groups_effective`` (exp of the entropy
        of the group shares; K for balanced groups, 1 when every entity is in one group). A collapsed
        assignment turns the entity-level term into FTD over the few large groups."""
        state = {"tau": self.tau} if self.fixed_groups is None else {}
        for side, bank, counts in (("user", self.user_bank, self.group_counts[: self.p.groups]), ("item", self.item_bank, self.group_counts[self.p.groups :])):
            state.update({f"{side}_{k}": round(v, 4) for k, v in bank.stats.items()})
            if counts.sum() > 0:
                share = counts[counts > 0].double() / counts.sum()
                state[f"{side}_groups_used"] = int((counts > 0).sum())
                state[f"{side}_groups_effective"] = round(float(torch.exp(-(share * share.log()).sum())), 2)
        return state


__all__ = ["FTD", "HTD", "entity_topology_loss", "kmeans_groups", "student_dims"]
