"""A bank of M small experts with a Gumbel selection network: the engine of DE and of HTD's
group-assignment term (METHODS.md §1, §3.2).

Expert E_m: d_s → h → d_t (Linear, ReLU, Linear). Selection: α_x = softmax(V e_t(x)) and
s_x = softmax((log(α_x + 1e-10) + g) / τ), g ~ Gumbel(0, 1). The reconstruction loss of entity x is

    ‖ e_t(x) − Σ_m s_{x,m} E_m(e_s(x)) ‖²₂          (squared norm, summed over dimensions).

**Cost.** The official code evaluates all M experts for every entity (≈ 1.5 MFLOP per entity for
M = 30, 20 → 110 → 200), which makes DE ~10× slower than its student. Once τ has annealed the
selection is one-hot, so most of that work is multiplied by zero. We evaluate, per entity, only the
experts that carry its selection mass: the largest weights until their sum reaches ``mass``, at most
``max_active`` of them, renormalised to sum to 1. ``mass = 1`` and ``max_active = M`` is the exact
dense mixture (computed densely). The kept (entity, expert) pairs are sorted by expert and each
expert present in the batch runs one matmul on its slice (:class:`SegmentMLP`): no padding, no
copies of the expert weights, whatever the load balance (a loop over at most M experts, never over
entities). Subnormal floats are flushed to zero (they made the CPU matmuls up to 50× slower).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.distill.common import gumbel_softmax_selection


class SegmentMLP(torch.autograd.Function):
    """Per-expert two-layer MLPs over rows sorted by expert: y[r] = relu(x[r] W1_m + b1_m) W2_m + b2_m.

    x: [P, d_s] rows grouped by expert, ``counts[m]`` rows for expert m (in order); w1: [M, d_s, h];
    b1: [M, h]; w2: [M, h, d_t]; b2: [M, d_t]. Returns y [P, d_t].

    One matmul per expert *present in the batch* on its contiguous slice — no padding, no gathered
    copies of the expert weights — and a hand-written backward that writes each expert's weight
    gradients directly (autograd's generic path through gathered weights is several times slower
    on CPU).
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, counts):
        h = x.new_empty(x.shape[0], w1.shape[2])
        y = x.new_empty(x.shape[0], w2.shape[2])
        start = 0
        for m, c in enumerate(counts):
            if c:
                sl = slice(start, start + c)
                torch.addmm(b1[m], x[sl], w1[m], out=h[sl])
                h[sl].clamp_(min=0)
                torch.addmm(b2[m], h[sl], w2[m], out=y[sl])
                start += c
        ctx.save_for_backward(x, w1, w2, h)
        ctx.counts = counts
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w1, w2, h = ctx.saved_tensors
        gy = gy.contiguous()
        g_x = torch.empty_like(x)
        g_w1, g_w2 = torch.zeros_like(w1), torch.zeros_like(w2)
        g_b1, g_b2 = w1.new_zeros(w1.shape[0], w1.shape[2]), w2.new_zeros(w2.shape[0], w2.shape[2])
        start = 0
        for m, c in enumerate(ctx.counts):
            if c:
                sl = slice(start, start + c)
                g = gy[sl]
                torch.mm(h[sl].t(), g, out=g_w2[m])
                g_b2[m] = g.sum(0)
                g_h = torch.mm(g, w2[m].t()).mul_(h[sl] > 0)
                torch.mm(x[sl].t(), g_h, out=g_w1[m])
                g_b1[m] = g_h.sum(0)
                torch.mm(g_h, w1[m].t(), out=g_x[sl])
                start += c
        return g_x, g_w1, g_b1, g_w2, g_b2, None


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


class ExpertBank(nn.Module):
    """M experts d_s → hidden → d_t plus the selection network d_t → M.

    Args:
        n_experts: M (1 means a single expert and s ≡ 1).
        d_s, d_t: student and teacher dimensions.
        hidden: expert hidden width (METHODS.md: ⌊(d_s + d_t)/2⌋, or d_s/2 for self-distillation).
        mass, max_active: the sparse evaluation (see the module docstring).
    """

    def __init__(self, n_experts: int, d_s: int, d_t: int, hidden: int, mass: float = 1.0, max_active: int | None = None):
        super().__init__()
        self.n_experts, self.d_s, self.d_t, self.hidden = n_experts, d_s, d_t, hidden
        self.mass = mass
        self.max_active = min(max_active or n_experts, n_experts)
        self.w1 = nn.Parameter(_uniform_(torch.empty(n_experts, d_s, hidden), d_s))
        self.b1 = nn.Parameter(_uniform_(torch.empty(n_experts, hidden), d_s))
        self.w2 = nn.Parameter(_uniform_(torch.empty(n_experts, hidden, d_t), hidden))
        self.b2 = nn.Parameter(_uniform_(torch.empty(n_experts, d_t), hidden))
        self.gate = nn.Linear(d_t, n_experts)
        self.stats: dict[str, float] = {}

    @property
    def exact(self) -> bool:
        return self.mass >= 1.0 and self.max_active >= self.n_experts

    def hard_groups(self, teacher: torch.Tensor) -> torch.Tensor:
        """argmax_m α_{x,m}: the hard group of each entity (HTD), without gradient. int64 [n]."""
        with torch.no_grad():
            return self.gate(teacher).argmax(dim=-1)

    def selection(self, teacher: torch.Tensor, tau: float) -> torch.Tensor:
        """s [n, M]: the Gumbel-softmax selection at temperature τ (≡ 1 when M = 1)."""
        if self.n_experts == 1:
            return teacher.new_ones(teacher.shape[0], 1)
        return gumbel_softmax_selection(self.gate(teacher), tau)

    # ------------------------------------------------------------------------------ forward
    def _dense(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = torch.relu(torch.einsum("nd,mdh->nmh", x, self.w1) + self.b1)  # [n, M, h]
        a = (h * s.unsqueeze(-1)).reshape(n, -1)  # [n, M·h]
        return a @ self.w2.reshape(-1, self.d_t) + s @ self.b2

    def _sparse(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        n, m = s.shape
        k = self.max_active
        top_w, top_e = torch.topk(s, k, dim=1)  # sorted, descending
        with torch.no_grad():
            before = torch.cumsum(top_w, dim=1) - top_w
            keep = before < self.mass
            keep[:, 0] = True
        kept = top_w * keep
        total = kept.sum(dim=1, keepdim=True)
        weights = kept / total  # renormalised; differentiable w.r.t. the kept selection weights
        self.stats = {"kept_mass": float(total.detach().mean()), "active_experts": float(keep.sum(1).float().mean())}
        rows = torch.arange(n, device=x.device).unsqueeze(1).expand(n, k)[keep]
        experts = top_e[keep]
        w = weights[keep]
        return self._grouped(x, rows, experts, w)

    def _grouped(self, x: torch.Tensor, rows: torch.Tensor, experts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ over pairs p of w_p E_{experts_p}(x_{rows_p}), accumulated per row → [n, d_t]."""
        order = torch.argsort(experts, stable=True)
        rows, w = rows[order], w[order]
        counts = torch.bincount(experts, minlength=self.n_experts).tolist()
        y = SegmentMLP.apply(x[rows], self.w1, self.b1, self.w2, self.b2, counts)
        return x.new_zeros(x.shape[0], self.d_t).index_add(0, rows, y * w.unsqueeze(1))

    def mixture(self, student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
        """Σ_m s_{x,m} E_m(e_s(x)) → [n, d_t] for student [n, d_s] and teacher [n, d_t]."""
        s = self.selection(teacher, tau)
        if self.n_experts == 1 or self.exact:
            self.stats = {"kept_mass": 1.0, "active_experts": float(self.n_experts)}
            return self._dense(student, s)
        return self._sparse(student, s)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, tau: float, weight: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Σ_x w_x ‖e_t(x) − Σ_m s_{x,m} E_m(e_s(x))‖² (scalar)."""
        if student.shape[0] == 0:
            return student.sum() * 0.0
        err = ((teacher - self.mixture(student, teacher, tau)) ** 2).sum(dim=1)
        return (err * weight).sum()


def expert_hidden(d_s: int, d_t: int, hidden: int | None) -> int:
    """The expert hidden width: ⌊(d_s + d_t)/2⌋, or d_s/2 when d_s == d_t (METHODS.md §1)."""
    if hidden:
        return hidden
    return max(1, d_s // 2) if d_s == d_t else (d_s + d_t) // 2


__all__ = ["ExpertBank", "expert_hidden"]
