"""A bank of M small experts with a Gumbel selection network: the engine of DE and of HTD's
group-assignment term (docs/methods.md#de-distillation-experts, #ftd-and-htd-topology-distillation).

Expert E_m: d_s → h → d_t (Linear, ReLU, Linear). Selection: α_x = softmax(V e_t(x)) and
s_x = softmax((log(α_x + 1e-10) + g) / τ), g ~ Gumbel(0, 1). The reconstruction loss of entity x is

    ‖ e_t(x) − Σ_m s_{x,m} E_m(e_s(x)) ‖²₂          (squared norm, summed over dimensions).

**Cost.** The official code evaluates all M experts for every entity (≈ 1.5 MFLOP per entity for
M = 30, 20 → 110 → 200), which makes DE ~10× slower than its student. Once τ has annealed the
selection is one-hot, so most of that work is multiplied by zero. We evaluate, per entity, only the
experts that carry its selection mass: the largest weights until their sum reaches ``mass``, at most
``max_active`` of them, renormalised to sum to 1 (``mass = 1`` and ``max_active = M`` is the exact
mixture). The kept (entity, expert) pairs are sorted by expert, and :class:`_ExpertRegression`
computes the loss and its hand-written backward: one matmul per expert present in the batch and
direction on its contiguous slice (no padding, no copies of the expert weights; one padded batched
matmul for all experts measured slower, its padding doubling the work), bias gradients as one
segment sum, and — because the loss is quadratic — no autograd graph over the [n, d_t] outputs.
Subnormal floats are flushed to zero by the trainer (they made CPU matmuls up to 50× slower).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.distill.common import gumbel_softmax_selection


class _ExpertRegression(torch.autograd.Function):
    """Σ_e c_e ‖t_e − Σ_{p: rows_p = e} w_p E_{m_p}(x_e)‖²  (scalar), with a hand-written backward.

    x [n, d_s] student rows, w [P] pair weights, (w1 [M, d_s, h], b1 [M, h], w2 [M, h, d_t], b2 [M, d_t])
    the experts, t [n, d_t] teacher rows, c [n] entity weights; ``rows`` [P] is the entity of each
    pair and ``experts`` [P] its expert, pairs sorted by expert with ``counts[m]`` pairs for expert m.

    With o_p = E_{m_p}(x_{rows_p}) and the residual ε_e = Σ_p w_p o_p − t_e:
    ∂/∂w_p = 2 c_e ⟨o_p, ε_e⟩,  ∂/∂o_p = 2 c_e w_p ε_e, and the usual two-layer backward per expert.
    The forward keeps 2 c_e ε_e per pair; the backward folds the incoming gradient into it before the
    matrix products, so the expert gradients come out scaled without another pass over them.
    """

    @staticmethod
    def forward(ctx, x, w, w1, b1, w2, b2, t, c, rows, experts, counts):
        n, n_pairs = x.shape[0], rows.shape[0]
        xs = x.index_select(0, rows)
        h = x.new_empty(n_pairs, w1.shape[2])
        o = x.new_empty(n_pairs, w2.shape[2])
        slices = []
        start = 0
        for m, cnt in enumerate(counts):
            if cnt:
                slices.append((m, slice(start, start + cnt)))
                start += cnt
        for m, sl in slices:
            torch.addmm(b1[m], xs[sl], w1[m], out=h[sl])
        h.clamp_(min=0)
        for m, sl in slices:
            torch.addmm(b2[m], h[sl], w2[m], out=o[sl])
        if n_pairs == n:  # every entity keeps ≥ 1 pair, so P = n means exactly one each
            resid = o * w.unsqueeze(1) - t.index_select(0, rows)  # in pair order
            cp = c.index_select(0, rows)
            loss = (resid.square().sum(1) * cp).sum()
            g_o = resid.mul_(2 * cp.unsqueeze(1))  # ∂/∂(w_p o_p)
        else:
            resid = x.new_zeros(n, o.shape[1]).index_add_(0, rows, o * w.unsqueeze(1)).sub_(t)
            loss = (resid.square().sum(1) * c).sum()
            g_o = resid.mul_(2 * c.unsqueeze(1)).index_select(0, rows)
        ctx.slices, ctx.n_entities, ctx.absent = slices, n, [m for m, cnt in enumerate(counts) if not cnt]
        ctx.save_for_backward(xs, h, o, g_o, w, w1, b1, w2, b2, rows, experts)
        return loss

    @staticmethod
    def backward(ctx, g):
        xs, h, o, g_o, w, w1, b1, w2, b2, rows, experts = ctx.saved_tensors
        g_w = (o * g_o).sum(1).mul_(g)
        g_o = g_o * (w * g).unsqueeze(1)  # not in place: a retained graph may run this backward again
        g_w1, g_w2 = torch.empty_like(w1), torch.empty_like(w2)
        if ctx.absent:
            g_w1[ctx.absent], g_w2[ctx.absent] = 0.0, 0.0
        g_h = torch.empty_like(h)
        for m, sl in ctx.slices:
            torch.mm(h[sl].T, g_o[sl], out=g_w2[m])
            torch.mm(g_o[sl], w2[m].T, out=g_h[sl])
        g_h.mul_(h > 0)
        g_xs = torch.empty_like(xs)
        for m, sl in ctx.slices:
            torch.mm(xs[sl].T, g_h[sl], out=g_w1[m])
            torch.mm(g_h[sl], w1[m].T, out=g_xs[sl])
        g_b1 = b1.new_zeros(b1.shape).index_add_(0, experts, g_h)
        g_b2 = b2.new_zeros(b2.shape).index_add_(0, experts, g_o)
        g_x = xs.new_zeros(ctx.n_entities, xs.shape[1]).index_add_(0, rows, g_xs)
        return g_x, g_w, g_w1, g_b1, g_w2, g_b2, None, None, None, None, None


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


class ExpertBank(nn.Module):
    """M experts d_s → hidden → d_t plus the selection network d_t → M.

    Args:
        n_experts: M (1 means a single expert and s ≡ 1).
        d_s, d_t: student and teacher dimensions.
        hidden: expert hidden width (docs/methods.md#de-distillation-experts: ⌊(d_s + d_t)/2⌋, or d_s/2 for self-distillation).
        mass, max_active: the sparse evaluation (see the module docstring).
        gated: build the selection network (False when the caller fixes the selection itself, as
            HTD's K-means groups do: then only :meth:`loss_for_selection` is used).
    """

    def __init__(self, n_experts: int, d_s: int, d_t: int, hidden: int, mass: float = 1.0, max_active: int | None = None, gated: bool = True):
        super().__init__()
        self.n_experts, self.d_s, self.d_t, self.hidden = n_experts, d_s, d_t, hidden
        self.mass = mass
        self.max_active = min(max_active or n_experts, n_experts)
        self.w1 = nn.Parameter(_uniform_(torch.empty(n_experts, d_s, hidden), d_s))
        self.b1 = nn.Parameter(_uniform_(torch.empty(n_experts, hidden), d_s))
        self.w2 = nn.Parameter(_uniform_(torch.empty(n_experts, hidden, d_t), hidden))
        self.b2 = nn.Parameter(_uniform_(torch.empty(n_experts, d_t), hidden))
        self.gate = nn.Linear(d_t, n_experts) if gated else None
        self.stats: dict[str, float] = {}

    @property
    def exact(self) -> bool:
        return self.mass >= 1.0 and self.max_active >= self.n_experts

    def selection(self, teacher: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(s [n, M], hard [n]): the Gumbel-softmax selection at temperature τ (≡ 1 when M = 1) and
        argmax_m α_{x,m}, the hard group of each entity (HTD; no gradient), from one gate pass."""
        logits = self.gate(teacher)
        hard = logits.detach().argmax(dim=-1)
        if self.n_experts == 1:
            return teacher.new_ones(teacher.shape[0], 1), hard
        return gumbel_softmax_selection(logits, tau), hard

    def pairs(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows [P], experts [P], weights [P]): the (entity, expert) pairs evaluated for selection s.

        Exact: every pair, weighted by s. Otherwise, per entity, the largest weights until their sum
        reaches ``mass`` (at most ``max_active``), renormalised — differentiable in the kept weights.
        """
        n, m = s.shape
        if self.n_experts == 1 or self.exact:
            self.stats = {"kept_mass": 1.0, "active_experts": float(m)}
            return torch.arange(n, device=s.device).repeat_interleave(m), torch.arange(m, device=s.device).repeat(n), s.reshape(-1)
        k = self.max_active
        top_w, top_e = torch.topk(s, k, dim=1)  # sorted, descending
        with torch.no_grad():
            keep = (torch.cumsum(top_w, dim=1) - top_w) < self.mass
            keep[:, 0] = True
        kept = top_w * keep
        total = kept.sum(dim=1, keepdim=True)
        weights = kept / total
        self.stats = {"kept_mass": float(total.detach().mean()), "active_experts": float(keep.sum(1).float().mean())}
        rows = torch.arange(n, device=s.device).unsqueeze(1).expand(n, k)[keep]
        return rows, top_e[keep], weights[keep]

    def loss_for_selection(self, student: torch.Tensor, teacher: torch.Tensor, s: torch.Tensor, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Σ_x w_x ‖e_t(x) − Σ_m s_{x,m} E_m(e_s(x))‖² for a given selection s [n, M] (scalar)."""
        n = student.shape[0]
        if n == 0:
            return student.sum() * 0.0
        rows, experts, w = self.pairs(s)
        order = torch.argsort(experts, stable=True)
        rows, experts, w = rows[order], experts[order], w[order]
        counts = torch.bincount(experts, minlength=self.n_experts).tolist()
        c = torch.as_tensor(weight, dtype=student.dtype, device=student.device).expand(n).contiguous()
        return _ExpertRegression.apply(student, w, self.w1, self.b1, self.w2, self.b2, teacher.detach(), c, rows, experts, counts)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, tau: float, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Σ_x w_x ‖e_t(x) − Σ_m s_{x,m} E_m(e_s(x))‖² with s the Gumbel selection at τ (scalar)."""
        if student.shape[0] == 0:
            return student.sum() * 0.0
        return self.loss_for_selection(student, teacher, self.selection(teacher, tau)[0], weight)


def expert_hidden(d_s: int, d_t: int, hidden: int | None) -> int:
    """The expert hidden width: ⌊(d_s + d_t)/2⌋, or d_s/2 when d_s == d_t (docs/methods.md#de-distillation-experts)."""
    if hidden:
        return hidden
    return max(1, d_s // 2) if d_s == d_t else (d_s + d_t) // 2


__all__ = ["ExpertBank", "expert_hidden"]
