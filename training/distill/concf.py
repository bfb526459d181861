"""ConCF: consensus learning from heterogeneous objectives (Kang et al., WWW 2022).

Self-distillation without a teacher. The student's embeddings are shared by six heads, each trained
under its own one-class objective (:mod:`training.distill.concf_heads`): the target head A = BPR on
the student's own scores (what is exported; with ``model.tower: mlp`` they pass through the
student's output tower, the target head's network, while the other heads read the embeddings below it), CML, BCE, MSE, a user-side multinomial head and an
item-side multinomial head. Every ``period`` epochs each head's top-N list of every user is
snapshotted; once each head's queue holds ``queue`` snapshots, a consensus list C_u is built from the
heads' ranks and their consistency (:mod:`training.distill.consensus`). Per batch

    L = Σ_h w_h L_h + α Σ_h clip(w_h, 0.5, 2) L^CL_h,

where L^CL_h is the relaxed ranking loss of head h's scores with C_u[1..N/2] ranked first (in order)
and C_u[N/2+1..N] as the rest. The weights w_h follow a GradNorm-style rule: each head's gradient
norm at the shared embeddings, G_h = w_h ‖∇L_h‖, is moved towards mean(G) · (relative loss ratio)^τ,
then the weights are renormalised to sum to the number of heads and clamped at ≥ 0.01. Both parts
can be switched off for ablations (``consensus_learning: false``; ``balancing: fixed``).

The method computes the target head's BPR loss itself, so its configs set
``train.base_loss_weight: 0``. The returned terms are already weighted by w_h (the per-head loss
and weight are in the epoch log's ``kd_state``).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from training.distill.base import Batch, KDContext, KDMethod
from training.distill.common import relaxed_ranking_loss
from training.distill.concf_heads import HEAD_KINDS, PAIR_LOSSES, Head, multinomial_loss
from training.distill.consensus import (
    SnapshotQueue,
    consensus_lists,
    list_metrics,
    top_n_excluding,
)
from training.distill.latent import Params
from training.distill.registry import register
from training.errors import ConfigError


class ConCFParams(Params):
    alpha: float = Field(0.005, ge=0, description="α_CL, the weight of the consensus-learning terms")
    period: int = Field(10, ge=1, description="epochs between two snapshots / consensus refreshes")
    queue: int = Field(5, ge=1, description="snapshots per head kept for the consistency term")
    top_n: int = Field(100, ge=2, description="length of the snapshots and the consensus list (first half ranked)")
    consensus_learning: bool = True
    balancing: Literal["gradnorm", "fixed"] = "gradnorm"
    balance_rate: float = Field(0.15, ge=0, description="τ: the exponent of the relative loss ratio")
    balance_lr: float = Field(0.01, gt=0, description="step of the weight update (on normalised gradients)")
    dropout: float = Field(0.1, ge=0, lt=1)


def gradnorm_step(w: torch.Tensor, grad_norms: torch.Tensor, loss_ratios: torch.Tensor, rate: float, lr: float) -> torch.Tensor:
    """One update of the head weights w [H] (returns the new weights).

    G_h = w_h g_h with g_h = ‖∇L_h‖ at the shared embeddings; target T_h = mean(G) · (r_h / mean r)^rate
    with r_h = L_h / L_h(0). Descends Σ_h |G_h − T_h| in w (T held fixed): ∂/∂w_h = sign(G_h − T_h) g_h,
    scaled by 1 / mean(g) so the step does not depend on the losses' scale; then w ← w · H / Σw and
    w ≥ 0.01.
    """
    g = grad_norms.to(w.dtype)
    G = w * g
    r = loss_ratios / loss_ratios.mean().clamp(min=1e-12)
    target = G.mean() * r.pow(rate)
    w = w - lr * torch.sign(G - target) * g / g.mean().clamp(min=1e-12)
    w = w.clamp(min=1e-12)
    return (w * len(w) / w.sum()).clamp(min=0.01)


@register
class ConCF(KDMethod[ConCFParams]):
    """ConCF (Kang et al., WWW 2022): L = Σ_h w_h L_h + α Σ_h clip(w_h, 0.5, 2) L^CL_h over six heads
    on shared embeddings; the consensus c(u, i) = Σ_h [e^{−r_h/10} + e^{−σ_h/100}]·1[r_h < N] of
    the heads' ranks r_h and their standard deviation σ_h over the last snapshots."""

    name = "concf"
    Params = ConCFParams

    def __init__(self, weight: float | None = None, params: ConCFParams | None = None):
        super().__init__(weight, params)
        self.heads = nn.ModuleList()
        self.register_buffer("w", torch.ones(len(HEAD_KINDS)))
        self.register_buffer("initial_losses", torch.zeros(len(HEAD_KINDS)))
        self.consensus: torch.Tensor | None = None
        self.refresh_log: list[float] = []  # seconds of each refresh (the cost benchmark drains it)
        self._last: dict = {}

    def table_gradients(self) -> str:
        if self.params.balancing == "gradnorm":
            return "balances its heads by the gradient norms at the shared embeddings (distill.methods: balancing: fixed does not)"
        return ""

    def setup(self, ctx: KDContext) -> None:
        if not ctx.student.factorised:
            raise ConfigError(f"KD method 'concf' needs a factorised student (mf, lightgcn): its target head is the inner product; got {ctx.student.family}.")
        p = self.params
        self.heads = nn.ModuleList(Head(kind, ctx.student.dim, p.dropout) for kind in HEAD_KINDS)
        self.dataset = ctx.dataset
        self.train_csr = ctx.dataset.train
        self.queues = [SnapshotQueue(p.queue) for _ in HEAD_KINDS]
        self._epoch = -1

    # ------------------------------------------------------------------------- consensus
    @torch.no_grad()
    def snapshot(self, student) -> list[np.ndarray]:
        """Every head's top-N list per user (training items out), scored in chunks of users."""
        was = [student.training, self.training]
        student.eval()
        self.eval()
        try:
            lists = []
            for head, (u, i) in zip(self.heads, self.views(student, student.representations())):
                pu, pi = head.project(u), head.project(i)
                lists.append(top_n_excluding(lambda rows, h=head, a=pu, b=pi: h.matrix(a[torch.from_numpy(rows)], b), self.train_csr, self.params.top_n))
            return lists
        finally:
            student.train(was[0])
            self.train(was[1])

    def refresh(self, student) -> None:
        """Snapshot every head; rebuild the consensus when every queue is full; record timings/quality."""
        t0 = time.perf_counter()
        lists = self.snapshot(student)
        for q, s in zip(self.queues, lists):
            q.push(s)
        info: dict = {"refresh_epoch": self._epoch}
        if all(q.full for q in self.queues):
            c, _ = consensus_lists([q.snapshots() for q in self.queues], self.dataset.n_items, self.params.top_n)
            self.consensus = torch.from_numpy(c)
        info["refresh_seconds"] = round(time.perf_counter() - t0, 4)
        self.refresh_log.append(time.perf_counter() - t0)
        d = self.dataset
        info["heads_valid"] = {k: list_metrics(s, d.valid, d.test, [10, 50]) for k, s in zip(HEAD_KINDS, lists)}
        if self.consensus is not None:
            c = self.consensus.numpy()
            info["consensus_valid"] = list_metrics(c, d.valid, d.test, [10, 50])
            info["consensus_test"] = list_metrics(c, d.test, d.valid, [10, 50])
        self._last = info

    def warm_up(self, student) -> None:
        """Fills every queue now (so the consensus learning is on from the next batch): for timing."""
        while self.consensus is None:
            self.refresh(student)

    def on_epoch_start(self, epoch: int, student) -> None:
        self._epoch = epoch
        if epoch > 0 and epoch % self.params.period == 0:
            self.refresh(student)

    # ------------------------------------------------------------------------------ losses
    def views(self, student, reps) -> list:
        """Each head's (user, item) tables: the target head scores the student's representations ``reps``
        (its output tower's, if any); the auxiliary heads share the embeddings below the tower."""
        shared = student.shared_representations(reps)
        return [reps if head.kind == "bpr" else shared for head in self.heads]

    def head_losses(self, batch: Batch, views: list) -> list[torch.Tensor]:
        """Each head's own objective on the batch (sums), in :data:`HEAD_KINDS` order."""
        users, pos, neg = batch.users, batch.pos, batch.neg
        neg_items, neg_inverse = neg.unique(return_inverse=True)  # each distinct negative projected once
        out = []
        for head, (u_all, i_all) in zip(self.heads, views):
            if head.kind == "multinomial":
                uniq, rows = users.unique(return_inverse=True)
                out.append(multinomial_loss(head.matrix(head.project(u_all[uniq]), head.project(i_all)), rows, pos))
            elif head.kind == "item_multinomial":
                uniq, rows = pos.unique(return_inverse=True)
                out.append(multinomial_loss(head.matrix(head.project(i_all[uniq]), head.project(u_all)), rows, users))
            else:
                pu = head.project(u_all[users])
                sp = head.pairs(pu, head.project(i_all[pos]))
                sn = head.candidates(pu, head.project(i_all[neg_items]), neg_inverse)
                out.append(PAIR_LOSSES[head.kind](sp, sn))
        return out

    def cl_losses(self, batch: Batch, views: list) -> list[torch.Tensor]:
        """Each head's relaxed ranking loss towards the consensus lists of the batch's users."""
        users = batch.users.unique()
        lists = self.consensus[users]
        valid = lists >= 0
        items, inverse = lists.clamp(min=0).unique(return_inverse=True)  # each distinct item projected once
        half = self.params.top_n // 2
        out = []
        for head, (u_all, i_all) in zip(self.heads, views):
            s = head.ranking_scores(head.candidates(head.project(u_all[users]), head.project(i_all[items]), inverse))
            out.append(relaxed_ranking_loss(s[:, :half], s[:, half:], valid[:, :half], valid[:, half:]))
        return out

    def _balance(self, losses: list[torch.Tensor], shared_tables) -> None:
        values = torch.stack([loss.detach() for loss in losses])
        if not bool((self.initial_losses > 0).all()):
            self.initial_losses.copy_(values.clamp(min=1e-12))
        shared = [t for t in shared_tables if t.requires_grad]
        norms = []
        for loss in losses:
            grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum((g * g).sum() for g in grads if g is not None)))
        p = self.params
        self.w.copy_(gradnorm_step(self.w, torch.stack(norms), values / self.initial_losses, p.balance_rate, p.balance_lr))

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        views = self.views(student, reps)
        losses = self.head_losses(batch, views)
        if self.params.balancing == "gradnorm" and self.training and torch.is_grad_enabled():
            self._balance(losses, views[-1])  # gradient norms at the shared embeddings
        w = self.w.detach()
        terms = {kind: w[h] * loss for h, (kind, loss) in enumerate(zip(HEAD_KINDS, losses))}
        if self.params.consensus_learning and self.consensus is not None:
            cl = self.cl_losses(batch, views)
            terms["cl"] = self.params.alpha * sum(w[h].clamp(0.5, 2.0) * x for h, x in enumerate(cl))
        return terms

    def log_state(self) -> dict:
        state = {
            "weights": {k: round(float(v), 4) for k, v in zip(HEAD_KINDS, self.w)},
            "consensus_learning": self.consensus is not None and self.params.consensus_learning,
        }
        if self._last.get("refresh_epoch") == self._epoch:
            state.update(self._last)
        return state
