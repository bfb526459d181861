"""HetComp: distillation from heterogeneous teachers via their trajectories (Kang et al., WWW 2023).

docs/hetcomp.md. The teacher is an ensemble of heterogeneous models (:class:`training.ensemble.Ensemble`)
whose members each kept a trajectory of V checkpoints (:mod:`training.ensemble.trajectory`).

**Ensemble target at state v** (v ∈ {0…V−1}^{U×X}: each user's current checkpoint per teacher x).
The unobserved target list T_u is the top-K of Σ_x w_x · exp(−p_x(u, i) / T), where p_x is the item's
position in checkpoint v_{u,x}'s list of unobserved items (``aggregate_lists``, as the ensemble). The
observed list P_u is the user's training items in the final ensemble's order, truncated to |P|.

**Dynamic knowledge construction (DKC)**, at the start of every epoch E = p·j ≥ ``start_epoch``,
vectorised over users (one numpy pass per teacher):
 d(u, π) = 1 − NDCG_u, with gains g_q = 2^{exp(−q/10)} − 1 at the **student's** 0-based position q of
 its top-k unobserved list, counted when that item is in π's top-k (k = 50), over the ideal Σ g_q / log2(q+2).
 The first call stores D_{u,x} = d(u, π_x^{v+1}). Later calls, for pairs with v < V−1: with
 δ = D_{u,x} / d(u, π_x^{v+1}), advance v_{u,x} when δ > θ_j or δ < 1, then store D = d(u, π_x^{v+2}).
 Threshold ``official``: θ_j = α · decay^j (below 1 from j = 10, so every pair then advances at every
 call — docs/methods.md#pitfalls, item 11). ``adaptive``: θ_j = max(α · decay^j, floor) with floor > 1, and a
 pair is forced forward after ``max_calls_per_stage`` calls on one checkpoint.

**Adaptive knowledge transfer (AKT)**. Scores r = the student's full rows for the batch's unique users,
clamped to ±``clamp``; C(S) = logsumexp of r over unobserved items not in S — a *masked* logsumexp
(never a difference of large sums, docs/methods.md#pitfalls, item 2).
 Phase 1 (while the mean checkpoint index of some teacher, rounded to 2 decimals, is below its last):
   L = Σ_u Σ_{x ∈ P_u ∪ T_u} softplus(C(T_u) − r_x)   [= −log e^{r_x} / (e^{r_x} + Σ_{j∉T_u} e^{r_j})]
 Phase 2: L = rank_phase_scale · [ LM(P_u; C(T_u[:50])) + ½ (LM(T_u[:50]; C(T_u[:50])) + LM(T_u[:10]; C(T_u[:10]))) ]
   with the relaxed ListMLE LM(π; c) = −Σ_k [ r_{π_k} − logaddexp(logΣ_{l≥k} e^{r_{π_l}}, c) ].
 Both are sums over users (the official reduction); the method's ``weight`` (0.01) multiplies them and
 ``rank_phase_scale`` = 0.5 reproduces the official phase-2 weight 0.005. Train with
 ``train.base_loss_weight: 0`` (KD only, as the official code; docs/methods.md#pitfalls, item 10).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from service.bundle.aggregation import aggregate_lists
from training.distill.base import Batch, KDContext, KDMethod
from training.distill.common import NEG_INF, relaxed_ranking_loss
from training.distill.registry import register
from training.distill.teacher_protocol import TrajectoryTeacher
from training.errors import ConfigError
from training.evaluation import TorchScorer, top_k_excluding


# ------------------------------------------------------------------------------------ DKC (numpy)
def position_gains(k: int) -> np.ndarray:
    """float64 [k]: (2^{exp(−q/10)} − 1) / log2(q + 2) for student positions q = 0 … k−1."""
    q = np.arange(k, dtype=np.float64)
    return (2.0 ** np.exp(-q / 10.0) - 1.0) / np.log2(q + 2.0)


def discrepancy(student_top: np.ndarray, teacher_top: np.ndarray, n_items: int, decimals: int | None = 4) -> np.ndarray:
    """float64 [U]: 1 − NDCG_u of the student's top-k list against a teacher list's top-k (official form).

    Args:
        student_top: int [U, k], the student's top-k unobserved items, best first.
        teacher_top: int [U, ≥k], the teacher checkpoint's list (only its first k items count; −1 = padding).
        n_items: catalogue size (to build user·n_items + item keys).
        decimals: round NDCG like the official code (``None``: no rounding).
    """
    k = student_top.shape[1]
    users = np.arange(student_top.shape[0], dtype=np.int64)[:, None]
    t = np.asarray(teacher_top[:, :k], dtype=np.int64)
    keys = np.sort((users * n_items + t)[t >= 0])
    query = users * n_items + np.asarray(student_top, dtype=np.int64)
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hits = (keys[pos] == query) & (student_top >= 0)
    else:
        hits = np.zeros(query.shape, dtype=bool)
    g = position_gains(k)
    ndcg = (hits * g).sum(axis=1) / g.sum()
    if decimals is not None:
        ndcg = np.round(ndcg, decimals)
    return 1.0 - ndcg


def dkc_threshold(j: int, alpha: float, decay: float, mode: str, floor: float) -> float:
    """θ_j = α · decay^j (``official``) or max(α · decay^j, floor) (``adaptive``)."""
    theta = alpha * decay**j
    return max(theta, floor) if mode == "adaptive" else theta


def dkc_update(
    v: np.ndarray,
    stored: np.ndarray,
    dist: np.ndarray,
    last: np.ndarray,
    threshold: float,
    first: bool,
    stage_calls: np.ndarray | None = None,
    max_calls: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One DKC call, vectorised over users and teachers.

    Args:
        v: int [U, X], current checkpoint index per user and teacher.
        stored: float [U, X], D_{u,x} stored at the previous call.
        dist: float [X, V, U], d(u, π_x^c) for every checkpoint c (computed from the student now).
        last: int [X], the final checkpoint index of each teacher.
        threshold: θ of this call.
        first: the first call only stores D = d(π^{v+1}).
        stage_calls, max_calls: adaptive mode; calls spent on the current checkpoint, and the cap.

    Returns:
        (v, stored, stage_calls), new arrays.
    """
    n_users, n_teachers = v.shape
    u = np.arange(n_users)
    lastb = np.broadcast_to(last, v.shape)

    def d_at(idx: np.ndarray) -> np.ndarray:
        return np.stack([dist[x, idx[:, x], u] for x in range(n_teachers)], axis=1)

    d_next = d_at(np.minimum(v + 1, lastb))
    stage_calls = np.zeros_like(v) if stage_calls is None else stage_calls.copy()
    if first:
        return v.copy(), d_next, stage_calls
    active = v < lastb
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_next > 0, stored / np.where(d_next > 0, d_next, 1.0), np.inf)
    advance = active & ((ratio > threshold) | (ratio < 1.0))
    if max_calls is not None:
        stage_calls = np.where(active & ~advance, stage_calls + 1, stage_calls)
        forced = active & ~advance & (stage_calls >= max_calls)
        advance |= forced
        stage_calls = np.where(advance, 0, stage_calls)
    v_new = v + advance.astype(v.dtype)
    stored_new = np.where(advance, d_at(np.minimum(v_new + 1, lastb)), stored)
    return v_new, stored_new, stage_calls


# ---------------------------------------------------------------------------------- losses (torch)
def complement_logsumexp(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """[b]: log Σ_{j ∉ S_r} exp(scores[r, j]) for each row r, where S = {(rows[k], cols[k])} is removed.

    A masked logsumexp: the removed entries are set to ``NEG_INF`` in a copy of ``scores`` (their
    gradient is zero), so nothing is ever subtracted from a large sum (docs/methods.md#pitfalls, item 2).
    """
    masked = scores.index_put((rows, cols), torch.tensor(NEG_INF, dtype=scores.dtype))
    return torch.logsumexp(masked, dim=1)


def overall_loss(targets: torch.Tensor, valid: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Set-wise phase-1 loss Σ softplus(rest_u − r_x) over valid targets. targets/valid [b, n], rest [b]."""
    return (torch.nn.functional.softplus(rest[:, None] - targets) * valid).sum()


def relaxed_listmle(ordered: torch.Tensor, valid: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """−Σ_k [ r_k − logaddexp(log Σ_{l≥k} e^{r_l}, rest) ] over the valid entries of each row.

    ``ordered`` [b, n] are the scores of a list in target order (padding at the end, ``valid`` False);
    ``rest`` [b] is the log-sum-exp of the items that must rank below the whole list.
    """
    return relaxed_ranking_loss(ordered, ordered.new_empty(ordered.shape[0], 0), ranked_mask=valid, rest_logsumexp=rest)


# ------------------------------------------------------------------------------------- the method
class HetCompParams(BaseModel):
    """HetComp's knobs (official defaults, docs/methods.md#official-hyper-parameters)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(100, ge=10, description="K: length of the unobserved target list T_u")
    positives: int = Field(10, ge=1, description="|P_u|: observed items in ensemble order")
    period: int = Field(10, ge=1, description="p: DKC every p epochs")
    start_epoch: int = Field(10, ge=1, description="first DKC call (it only stores distances)")
    alpha: float = Field(1.05, gt=0)
    decay: float = Field(0.995, gt=0, le=1)
    threshold: Literal["official", "adaptive"] = Field(
        "official", description="official: θ=α·decay^j (forces all pairs forward once θ<1); adaptive: θ floored above 1 plus a per-stage call cap"
    )
    threshold_floor: float = Field(1.01, ge=1.0, description="adaptive: lower bound of θ")
    max_calls_per_stage: int = Field(5, ge=1, description="adaptive: calls on one checkpoint before a forced advance")
    discrepancy_k: int = Field(50, ge=1, description="list depth of the DKC discrepancy")
    discrepancy_decimals: int | None = Field(4, description="round NDCG as the official code (null: exact)")
    clamp: float = Field(40.0, gt=0, description="student scores are clamped to ±clamp")
    rank_phase_scale: float = Field(0.5, gt=0, description="phase-2 loss factor (official 0.005 / 0.01)")
    listwise_depths: tuple[int, int] = Field((50, 10), description="phase 2: ListMLE over T[:a] and T[:b] (a ≥ b)")
    trajectory: bool = Field(True, description="false (ablation): targets from the final checkpoints from the start, so no DKC and only the listwise phase")
    users: Literal["batch", "epoch"] = Field(
        "batch",
        description="batch: the unique users of each interaction batch (official; heavy users are distilled more often); "
        "epoch: every user exactly once per epoch, spread evenly over the batches (|U| full rows per epoch — the CPU budget)",
    )


@register
class HetComp(KDMethod[HetCompParams]):
    """HetComp (see the module docstring): DKC over teacher trajectories + two-phase AKT."""

    name = "hetcomp"
    default_weight = 0.01
    Params = HetCompParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        if not isinstance(ctx.teacher, TrajectoryTeacher):
            raise ConfigError(
                "hetcomp needs an ensemble teacher with trajectories (distill.teacher: an ensemble run folder built by `distillrec ensemble build`)."
            )
        teacher = ctx.teacher
        if p.listwise_depths[0] > p.top_k or p.listwise_depths[1] > p.listwise_depths[0]:
            raise ConfigError(f"hetcomp: listwise_depths {p.listwise_depths} must satisfy top_k ≥ a ≥ b.")
        self.dataset = ctx.dataset
        trajs = teacher.trajectories()
        for t in trajs:
            if t.items.shape[1] != ctx.dataset.n_users:
                raise ConfigError(f"hetcomp: trajectory of {t.run} has {t.items.shape[1]} users, the data has {ctx.dataset.n_users}.")
            if t.top_n < p.discrepancy_k:
                raise ConfigError(f"hetcomp: trajectory of {t.run} keeps top-{t.top_n} lists, discrepancy_k is {p.discrepancy_k}.")
        self.lists = [t.items for t in trajs]  # X × int32 [V_x, U, N]
        self.last = np.array([t.n_checkpoints - 1 for t in trajs], dtype=np.int64)
        self.weights = list(teacher.weights)
        self.temperature = float(teacher.temperature)
        n_users, n_teachers = ctx.dataset.n_users, len(trajs)
        self.register_buffer("v", torch.zeros(n_users, n_teachers, dtype=torch.long))
        self.register_buffer("stored", torch.ones(n_users, n_teachers, dtype=torch.float64))
        self.register_buffer("stage_calls", torch.zeros(n_users, n_teachers, dtype=torch.long))
        self.calls, self.phase, self.theta = 0, 1, float("nan")
        if not p.trajectory:  # ablation: the converged ensemble's lists only
            self.v.copy_(torch.from_numpy(np.broadcast_to(self.last, (n_users, n_teachers)).copy()))
        self.positive_lists = self._observed_targets(trajs)
        self.train_csr = ctx.dataset.train
        self.rng = ctx.rng
        self._order, self._batch_size = torch.arange(n_users), 1
        self._rebuild_targets()

    # ---------------------------------------------------------------------------- targets
    def _observed_targets(self, trajs) -> torch.Tensor:
        """P [U, |P|]: training items in the final ensemble's order (aggregate of the members' orders)."""
        lists = [t.observed_lists(t.n_checkpoints - 1) for t in trajs]
        items, _ = aggregate_lists(lists, self.params.positives, self.weights, self.temperature)
        return torch.from_numpy(items)

    def _rebuild_targets(self) -> None:
        """T [U, K] from the current state v (one gather per teacher, one vectorised aggregation)."""
        v = self.v.numpy()
        u = np.arange(v.shape[0])
        lists = [self.lists[x][v[:, x], u] for x in range(len(self.lists))]
        items, _ = aggregate_lists(lists, self.params.top_k, self.weights, self.temperature)
        self.targets = torch.from_numpy(items)
        means = np.round(v.mean(axis=0), 2)
        if self.phase == 1 and np.all(means >= self.last):
            self.phase = 2

    def get_extra_state(self) -> dict:
        return {"calls": self.calls, "phase": self.phase, "theta": None if np.isnan(self.theta) else self.theta}

    def set_extra_state(self, state: dict) -> None:
        self.calls, self.phase = int(state["calls"]), int(state["phase"])
        self.theta = float("nan") if state.get("theta") is None else float(state["theta"])
        self._rebuild_targets()  # buffers (v) are loaded before the extra state

    # ---------------------------------------------------------------------------- DKC
    def on_epoch_start(self, epoch: int, student) -> None:
        p = self.params
        if p.users == "epoch":
            self._order = torch.from_numpy(self.rng.permutation(self.dataset.n_users))
        if self.phase == 2 or epoch < p.start_epoch or epoch % p.period:
            return
        k = p.discrepancy_k
        users = np.arange(self.dataset.n_users)
        with torch.no_grad():
            student_top = top_k_excluding(TorchScorer(student), users, self.train_csr, k)
        n_items = self.dataset.n_items
        vmax = int(self.last.max()) + 1
        dist = np.ones((len(self.lists), vmax, len(users)))
        for x, lists in enumerate(self.lists):
            for c in range(lists.shape[0]):
                dist[x, c] = discrepancy(student_top, lists[c], n_items, p.discrepancy_decimals)
        j = epoch // p.period
        self.theta = dkc_threshold(j, p.alpha, p.decay, p.threshold, p.threshold_floor)
        v, stored, stage = dkc_update(
            self.v.numpy(),
            self.stored.numpy(),
            dist,
            self.last,
            self.theta,
            first=self.calls == 0,
            stage_calls=self.stage_calls.numpy(),
            max_calls=p.max_calls_per_stage if p.threshold == "adaptive" else None,
        )
        self.v.copy_(torch.from_numpy(v))
        self.stored.copy_(torch.from_numpy(stored))
        self.stage_calls.copy_(torch.from_numpy(stage))
        self.calls += 1
        self._rebuild_targets()

    # ---------------------------------------------------------------------------- AKT
    def _rest(self, scores: torch.Tensor, users: np.ndarray, excluded: torch.Tensor) -> torch.Tensor:
        """[b]: logsumexp of ``scores`` [b, I] over each user's unobserved items not in ``excluded`` [b, m] (−1 ignored)."""
        sub = self.train_csr[users]
        rows = [torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(sub.indptr)))]
        cols = [torch.from_numpy(sub.indices.astype(np.int64))]
        ok = excluded >= 0
        rows.append(torch.arange(len(users))[:, None].expand_as(excluded)[ok])
        cols.append(excluded[ok])
        return complement_logsumexp(scores, torch.cat(rows), torch.cat(cols))

    def batch_users(self, batch: Batch) -> torch.Tensor:
        """The users distilled in this batch (see ``HetCompParams.users``).

        ``epoch``: batch i of the epoch's n = ⌈nnz / batch size⌉ batches takes the slice
        [⌊i·U/n⌋, ⌊(i+1)·U/n⌋) of a fresh permutation of the users, so every user is distilled once.
        """
        if self.params.users == "batch":
            return torch.unique(batch.users)
        if batch.index == 0:
            self._batch_size = len(batch.users)
        n = -(-self.train_csr.nnz // self._batch_size)
        u = len(self._order)
        lo, hi = batch.index * u // n, min(u, (batch.index + 1) * u // n)
        return torch.sort(self._order[lo:hi]).values

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        p = self.params
        users_t = self.batch_users(batch)
        users = users_t.numpy()
        scores = student.score_all(users_t, reps=reps).clamp(-p.clamp, p.clamp)  # [b, I]
        top = self.targets[users_t]  # [b, K]
        pos = self.positive_lists[users_t]  # [b, |P|]

        def gather(lst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            ok = lst >= 0
            return torch.gather(scores, 1, lst.clamp(min=0)), ok

        if self.phase == 1:
            rest = self._rest(scores, users, top)
            r, ok = gather(torch.cat([pos, top], dim=1))
            return {"overall": overall_loss(r, ok, rest)}
        a, b = p.listwise_depths
        rest_a = self._rest(scores, users, top[:, :a])
        mid, mid_ok = gather(top[:, b:a])
        rest_b = torch.logaddexp(rest_a, torch.logsumexp(torch.where(mid_ok, mid, torch.full_like(mid, NEG_INF)), dim=1))
        rp, okp = gather(pos)
        ra, oka = gather(top[:, :a])
        loss = relaxed_listmle(rp, okp, rest_a) + 0.5 * (relaxed_listmle(ra, oka, rest_a) + relaxed_listmle(ra[:, :b], oka[:, :b], rest_b))
        return {"rank": p.rank_phase_scale * loss}

    def log_state(self) -> dict:
        v = self.v.numpy()
        return {
            "phase": self.phase,
            "dkc_calls": self.calls,
            "threshold": None if np.isnan(self.theta) else round(self.theta, 5),
            "mean_checkpoint": [round(float(m), 3) for m in v.mean(axis=0)],
        }
