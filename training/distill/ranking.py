"""Ranking-knowledge distillation: RRD and IR (Kang et al.; docs/methods.md#rrd-relaxed-ranking-distillation, #ir-item-side-ranking-regularization-ir-rrd) and the baselines
RD (Tang & Wang, KDD 2018) and CD (Lee et al., ICDM 2019).

All samples are redrawn once per epoch for every user (or item) with vectorised numpy (Gumbel-top-k
for rank-based draws, rejection sampling for uniform draws: no dense user×item masks), and the
per-batch work is a few student scores per unique batch user (item). Teacher lists come from the
teacher object's ``user_topn`` / ``item_topn`` (training interactions excluded), so RRD also works
with an ensemble teacher that only provides ranked lists.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field

from training.distill.base import Batch, KDContext, KDMethod
from training.distill.common import keys_of, list_lengths, rank_sample_positions, relaxed_ranking_loss, sorted_unique
from training.distill.latent import Params
from training.distill.registry import register
from training.distill.teacher_protocol import ItemListTeacher, ScoringTeacher, Teacher, require_teacher
from training.errors import ConfigError
from training.models.gather_dot import gather_dot
from training.models.row_grads import rows
from training.sampling import excluded_keys, sample_excluding


def score_users_for_items(student, items: torch.Tensor, users: torch.Tensor, reps) -> torch.Tensor:
    """Student scores of users[b, c] for items[b] → [b, c] (the item-side view)."""
    if student.factorised:
        u, i = reps
        return gather_dot(rows(i, items), u, users)
    b, c = users.shape
    return student.score_pairs(users.reshape(-1), items.repeat_interleave(c), reps=reps).view(b, c)


class ListSampler:
    """Per-epoch interesting / uninteresting samples for every row of a teacher top-N list.

    Rows are users (RRD) or items (IR). Interesting: K positions of the row's list drawn with
    P(rank r) ∝ exp(−r/T) without replacement and kept in teacher order (or the first K positions,
    ``deterministic``). Uninteresting: L columns drawn uniformly without replacement from outside
    (the row's training interactions ∪ its top-N list), by rejection sampling.

    When a row has fewer than N + L columns left outside its training interactions, its list is
    shortened so that L uninteresting columns always exist (docs/methods.md#pitfalls, item 8 — the guard the
    original code meant to have).
    """

    def __init__(self, lists: np.ndarray, train: sp.csr_matrix, k: int, n_rest: int, temperature: float, deterministic: bool, what: str):
        n_rows, n_cols = train.shape
        if lists.shape[0] != n_rows:
            raise ValueError(f"{what}: teacher list has {lists.shape[0]} rows, the data {n_rows}")
        self.k, self.n_rest, self.temperature, self.deterministic = k, n_rest, temperature, deterministic
        self.n_cols, self.width = n_cols, lists.shape[1]
        deg = np.diff(train.indptr)
        room = n_cols - deg - n_rest  # columns that may be interesting while leaving L uninteresting
        if (room < 1).any():
            r = int(np.argmin(room))
            raise ConfigError(f"{what}: row {r} has only {n_cols - deg[r]} unobserved columns, fewer than uninteresting ({n_rest}) + 1; lower it.")
        self.lengths = np.minimum(list_lengths(lists), room)
        self.lists = lists
        in_list = np.arange(self.width)[None, :] < self.lengths[:, None]
        rows = np.repeat(np.arange(n_rows), in_list.sum(1))
        self.keys = sorted_unique(np.concatenate([excluded_keys(train), keys_of(rows, lists[in_list], n_cols)]))

    def draw(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidates [rows, K + L]: the K interesting columns, then the L uninteresting; valid mask
        [rows, K] of the interesting ones), as torch tensors: one gather per batch serves both."""
        pos, valid = rank_sample_positions(rng, self.lengths, self.k, self.temperature, self.width, self.deterministic)
        interesting = np.take_along_axis(self.lists, pos, axis=1)
        interesting = np.where(valid, interesting, 0)
        rows = np.arange(len(self.lengths))
        if self.n_rest > 0:
            rest = sample_excluding(rng, rows, self.keys, self.n_rest, unique=True, n_items=self.n_cols)
        else:
            rest = np.zeros((len(rows), 0), dtype=np.int64)
        return torch.from_numpy(np.concatenate([interesting, rest], axis=1)), torch.from_numpy(valid)


# ---------------------------------------------------------------------------------------- RRD
class RRDParams(Params):
    interesting: int = Field(40, ge=1, description="K interesting items per user")
    uninteresting: int = Field(40, ge=0, description="L uninteresting items per user")
    temperature: float = Field(10.0, gt=0, description="T in P(rank r) ∝ exp(−r/T)")
    topn: int = Field(500, ge=1, description="N, length of the teacher list sampled from")
    sampling: Literal["rank", "topk"] = Field("rank", description="rank-based sampling (paper) or the deterministic teacher top-K (authors' later advice)")


@register
class RRD(KDMethod[RRDParams]):
    """Relaxed Ranking Distillation (Kang et al., "DE-RRD", CIKM 2020; docs/methods.md#rrd-relaxed-ranking-distillation).

    For each unique batch user u with K interesting items π_1..π_K (rank-sampled from the teacher's
    top-N unobserved items, in teacher order) and L uninteresting items (uniform, outside
    train ∪ top-N):

        L_RRD(u) = − Σ_{k=1}^{K} [ r_{uπ_k} − log( Σ_{i ≥ k} e^{r_{uπ_i}} + Σ_{j ∈ L_u} e^{r_{uj}} ) ]

    computed in the stable logcumsumexp/logaddexp form. Defaults (official main_URRD.py): K = L = 40,
    T = 10, N = 500, λ = 1e-3. ``sampling: topk`` is the deterministic top-K variant.
    """

    name = "rrd"
    default_weight = 1e-3
    Params = RRDParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        teacher = require_teacher(self.name, ctx.teacher, Teacher)
        self.p, self.rng = p, ctx.rng
        lists = np.asarray(teacher.user_topn(p.topn), dtype=np.int64)
        self.sampler = ListSampler(lists, ctx.dataset.train.tocsr(), p.interesting, p.uninteresting, p.temperature, p.sampling == "topk", "rrd")

    def on_epoch_start(self, epoch: int, student) -> None:
        self.cand, self.valid = self.sampler.draw(self.rng)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users = batch.users.unique()
        k = self.valid.shape[1]  # the interesting columns come first in cand
        scores = student.score_candidates(users, self.cand[users], reps=reps)
        return {"": relaxed_ranking_loss(scores[:, :k], scores[:, k:], self.valid[users])}


# ----------------------------------------------------------------------------------------- IR
class IRParams(Params):
    interesting: int = Field(20, ge=1, description="K_I interesting users per item")
    uninteresting: int = Field(20, ge=0, description="L_I uninteresting users per item")
    temperature: float = Field(10.0, gt=0)
    topn: int = Field(500, ge=1, description="N, length of the teacher's per-item user list")
    sampling: Literal["rank", "topk"] = "rank"


@register
class IR(KDMethod[IRParams]):
    """Item-side ranking Regularization, used as IR-RRD (Kang et al., Information Sciences 2021; docs/methods.md#ir-item-side-ranking-regularization-ir-rrd).

    For each item i the student should rank the teacher's top users ν_1..ν_{K_I} of i (rank-sampled
    from the item's top-N users, in teacher order) above L_I uninteresting users:

        L_IR(i) = − Σ_k [ r_{ν_k i} − log( Σ_{l ≥ k} e^{r_{ν_l i}} + Σ_{v ∈ L_i} e^{r_{v i}} ) ]

    summed over the unique items that RRD sampled (interesting ∪ uninteresting) for the batch's users,
    as in the official code; so IR ``requires`` an ``rrd`` method in the same run (in any order). Defaults: K_I = L_I = 20,
    T_I = 10, N = 500, λ_IR = 5e-4 (with RRD at its defaults).
    """

    name = "ir"
    default_weight = 5e-4
    Params = IRParams
    requires = (RRD,)
    rrd: RRD  # the run's RRD method (set up in setup; a reference, not a submodule)

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        teacher = require_teacher(self.name, ctx.teacher, ItemListTeacher)
        self.p, self.rng = p, ctx.rng
        # a plain reference, not a submodule: RRD's state stays RRD's own in checkpoints
        object.__setattr__(self, "rrd", ctx.method(self.name, RRD))
        lists = np.asarray(teacher.item_topn(p.topn), dtype=np.int64)
        self.sampler = ListSampler(lists, ctx.dataset.train.T.tocsr(), p.interesting, p.uninteresting, p.temperature, p.sampling == "topk", "ir")

    def on_epoch_start(self, epoch: int, student) -> None:
        self.cand, self.valid = self.sampler.draw(self.rng)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        rrd = self.rrd
        users = batch.users.unique()
        touched, k_rrd = rrd.cand[users], rrd.valid.shape[1]
        items = torch.cat([touched[:, :k_rrd][rrd.valid[users]], touched[:, k_rrd:].reshape(-1)]).unique()
        k = self.valid.shape[1]
        scores = score_users_for_items(student, items, self.cand[items], reps)
        return {"": relaxed_ranking_loss(scores[:, :k], scores[:, k:], self.valid[items])}


# ----------------------------------------------------------------------------------------- RD
class RDParams(Params):
    topk: int = Field(10, ge=1, description="K, the teacher's top-K unobserved items per user")
    temperature: float = Field(1.0, gt=0, description="static weights w_r ∝ exp(−r/T)")
    mu: float = Field(0.1, gt=0, description="dynamic weights tanh(μ (r̂ − r)) clipped at 0")
    dynamic_samples: int = Field(100, ge=1, description="uniform items used to estimate the student's rank r̂")
    dynamic_start_epoch: int = Field(30, ge=0, description="use static weights only before this epoch")


@register
class RD(KDMethod[RDParams]):
    """Ranking Distillation (Tang & Wang, KDD 2018), the DE-RRD papers' point-wise baseline.

    For each unique batch user, the teacher's top-K unobserved items π_1..π_K are treated as
    positives with weights w_r:

        L_RD(u) = − Σ_{r=1}^{K} w_r log σ(r^s_{uπ_r}),   w_r = normalise_1( e^{−r/T} · max(0, tanh(μ (r̂_r − r))) )

    where r̂_r is the student's rank of π_r estimated from ``dynamic_samples`` uniform unobserved items
    (before ``dynamic_start_epoch``: the static weights only). Defaults follow the KDs benchmark's
    implementation (K = 10, T = 1, μ = 0.1, 100 samples) with λ = 0.5; not tuned here.
    """

    name = "rd"
    default_weight = 0.5
    Params = RDParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self.p, self.rng = p, ctx.rng
        top = np.asarray(require_teacher(self.name, ctx.teacher, Teacher).user_topn(p.topk), dtype=np.int64)
        self.top = torch.from_numpy(np.where(top >= 0, top, 0))
        self.top_valid = torch.from_numpy(top >= 0)
        static = torch.exp(-torch.arange(1, p.topk + 1, dtype=torch.float32) / p.temperature)
        self.static = static / static.sum()
        self.train_keys = excluded_keys(ctx.dataset.train)
        self.n_users, self.n_items = ctx.dataset.n_users, ctx.dataset.n_items
        self.epoch = 0

    def on_epoch_start(self, epoch: int, student) -> None:
        self.epoch = epoch
        users = np.arange(self.n_users)
        self.dynamic = torch.from_numpy(sample_excluding(self.rng, users, self.train_keys, self.p.dynamic_samples, unique=False, n_items=self.n_items))

    def weights(self, top_scores: torch.Tensor, dynamic_scores: torch.Tensor) -> torch.Tensor:
        """Static × dynamic weights [b, K] (no gradient)."""
        w = self.static.expand_as(top_scores)
        if self.epoch < self.p.dynamic_start_epoch:
            return w
        above = (dynamic_scores.unsqueeze(1) > top_scores.unsqueeze(2)).float().mean(2)  # [b, K]
        est_rank = torch.floor((self.n_items - 1) * above) + 1
        position = torch.arange(top_scores.shape[1], dtype=torch.float32)
        dynamic = torch.tanh(self.p.mu * (est_rank - position)).clamp(min=0)
        return F.normalize(w * dynamic, p=1, dim=1)

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users = batch.users.unique()
        scores = student.score_candidates(users, self.top[users], reps=reps)
        with torch.no_grad():
            dyn = student.score_candidates(users, self.dynamic[users], reps=reps) if self.epoch >= self.p.dynamic_start_epoch else None
            w = self.weights(scores.detach(), dyn) * self.top_valid[users]
        return {"": -(w * F.logsigmoid(scores)).sum()}


# ----------------------------------------------------------------------------------------- CD
class CDParams(Params):
    guide: Literal["teacher", "student", "random"] = Field("teacher", description="whose ranking the samples are drawn from")
    candidates: int = Field(500, ge=1, description="N, the top-N of the guide's ranking sampled from")
    temperature: float = Field(20.0, gt=0, description="rank weights exp(−r / (N·T)) (KDs)")
    samples: int = Field(2, ge=1, description="items distilled per user and epoch")
    t1: float = Field(2.0, gt=0, description="soft label σ((r^t + t2) / t1)")
    t2: float = 0.0


def tournament_log_weights(n: int, temperature: float) -> np.ndarray:
    """log P(the better-ranked of two draws with replacement, P(r) ∝ e^{−r/(nT)}, is at rank r)."""
    p = np.exp(-np.arange(1, n + 1) / (n * temperature))
    p /= p.sum()
    below = np.cumsum(p[::-1])[::-1] - p  # mass strictly after r
    return np.log(p * (p + 2 * below))


@register
class CD(KDMethod[CDParams]):
    """Collaborative Distillation (Lee, Choi, Kim & Kim, ICDM 2019), the DE-RRD papers' baseline.

    Per user and epoch, ``samples`` items are rank-sampled from the top-N of a guide ranking (the
    better of two rank-weighted draws, repeated without replacement, as in the KDs implementation),
    and the student fits the teacher's soft labels y = σ((r^t + t2)/t1) with a binary cross-entropy:

        L_CD(u) = Σ_j [ −y_{uj} log σ(r^s_{uj}) − (1 − y_{uj}) log(1 − σ(r^s_{uj})) ]

    (computed with logits, stably). Defaults from the KDs benchmark except N = 500 (KDs 3,000) and the
    guide = teacher (KDs: student); λ = 0.5. Needs teacher scores (``score_candidates``).
    """

    name = "cd"
    default_weight = 0.5
    Params = CDParams

    def setup(self, ctx: KDContext) -> None:
        p = self.params
        self.p, self.rng, self.teacher = p, ctx.rng, require_teacher(self.name, ctx.teacher, ScoringTeacher)
        self.train = ctx.dataset.train.tocsr()
        self.train_keys = excluded_keys(self.train)
        self.n_users, self.n_items = ctx.dataset.n_users, ctx.dataset.n_items
        self.log_w = tournament_log_weights(min(p.candidates, self.n_items), p.temperature)
        self.lists = np.asarray(require_teacher(self.name, ctx.teacher, Teacher).user_topn(p.candidates), dtype=np.int64) if p.guide == "teacher" else None

    def _student_topn(self, student) -> np.ndarray:
        from training.evaluation import TorchScorer, top_k_excluding

        return top_k_excluding(TorchScorer(student), np.arange(self.n_users), self.train, min(self.p.candidates, self.n_items))

    def on_epoch_start(self, epoch: int, student) -> None:
        users = np.arange(self.n_users)
        if self.p.guide == "random":
            items = sample_excluding(self.rng, users, self.train_keys, self.p.samples, unique=True, n_items=self.n_items)
        else:
            lists = self.lists if self.p.guide == "teacher" else self._student_topn(student)
            lengths = list_lengths(lists)
            pos, valid = rank_sample_positions(self.rng, lengths, self.p.samples, 1.0, lists.shape[1], log_weights=self.log_w[: lists.shape[1]])
            items = np.where(valid, np.take_along_axis(lists, pos, axis=1), 0)
            if not valid.all():
                raise ConfigError("cd: some user has fewer unobserved items than cd.samples")
        labels = 1.0 / (1.0 + np.exp(-(self.teacher.score_candidates(users, items) + self.p.t2) / self.p.t1))
        self.items = torch.from_numpy(items)
        self.labels = torch.from_numpy(labels.astype(np.float32))

    def forward(self, batch: Batch, student, reps) -> dict[str, torch.Tensor]:
        users = batch.users.unique()
        logits = student.score_candidates(users, self.items[users], reps=reps)
        return {"": F.binary_cross_entropy_with_logits(logits, self.labels[users], reduction="sum")}
