"""The fused training path of BPR matrix factorisation: sampling, scoring and the Adam update of a
whole epoch in one compiled loop (numba, one thread), with the same algorithm as the torch path.

Per epoch, exactly as :class:`training.trainer.Trainer` does with torch: every training pair
``(u, i)`` gets ``negatives`` items drawn uniformly from the items ``u`` has not interacted with in
training (with replacement within a pair), the pairs are shuffled, and each mini-batch of
``batch_size`` pairs takes one Adam step (L2 weight decay added to the gradient, bias-corrected
moments, every row of both tables updated as torch's dense Adam does) on the summed loss
``−Σ log σ(<e_u, e_i> − <e_u, e_j>)``. The differences are engineering only: no per-batch tensors,
autograd graph or optimizer dispatch, and the random numbers come from a xorshift generator inside
the loop (seeded from the trainer's numpy generator every epoch, so runs and resumed runs are
reproducible).

Between epochs the tables and Adam moments live where the torch path keeps them (the model's
embedding weights, the optimizer's state tensors), so checkpoints, resume and switching between the
two paths keep working unchanged; during an epoch the loop works on its own copy of them, laid out
for its access pattern (:class:`Tables`), loaded at the start and stored back at the end.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.errors import TrainingError
from training.kernels import _jit, assign_slots
from training.prefetch import prefetch
from training.row_adam import adam, adam_scales, adam_state

# reassoc + contract + arcp let the loops vectorise; the numpy error model has no zero-division branch.
_FLAGS = {"reassoc", "contract", "arcp"}
# How far ahead the loops prefetch (pairs of the batch; rows of the Adam pass): far
# enough to hide a miss to memory behind the work in between, near enough that the lines are still
# cached when used. Prefetching changes no result (docs/benchmarks.md, "The training epoch").
_AHEAD_PAIRS, _AHEAD_ROWS = 4, 8


# The tables. Each embedding table and its Adam state live in one flat float32 buffer F of three
# segments per row, the parameters P and the moments M and V: element k of row r's segment s is
# F[r * rs + s * ss + k]. The gradients live beside it in G, row by row. Two layouts:
# - per-row ("packed": rs = 3d rounded up to whole cache lines, ss = d) for the per-row Adam step: a
#   row's P, M and V are adjacent (4 cache lines at dim 20), and G is a small scratch table holding
#   the rows one batch touches, each at the slot the batch assigns it (``slot_of`` maps a row to its
#   slot, −1 when it has none; ``touched`` lists the rows in slot order). On a large table a step then
#   misses the caches once per row for its parameters and moments and never for its gradient.
# - dense ("stacked": rs = d, ss = n·d) for the dense step: three contiguous [n, d] tables and a full
#   [n, d] G in which row r is its own slot, so the Adam pass runs over each table in one vectorised loop.
# The kernels take a table as the tuple (F, G, slot_of, touched, rs, ss); ``slot_of`` is empty for
# the dense layout, which is how they tell the two apart.


@_jit(fastmath=_FLAGS, error_model="numpy")
def _step(users, pos, negs, count, TU, TI, d, gu, gp, gn, weight):
    """Adds ``weight`` × the gradient of the summed BPR loss of the first ``count`` pairs (users[p],
    pos[p], negs[p, :]) to the gradient rows of those rows, which lie at slots gu[p], gp[p] and
    gn[p, :] of the tables' G. Returns the unweighted loss."""
    FU, GU, slot_of, _, ru, _ = TU
    FI, GI, _, _, ri, _ = TI
    # what to prefetch of a row: per row, the whole row when it is short (see :func:`_whole_rows`), else
    # its parameters, and nothing of G (one batch's slots, which stay cached); dense, both
    per_row = slot_of.shape[0] > 0
    span = ru if per_row and _whole_rows(ru) else d
    gspan = 0 if per_row else d
    loss = 0.0
    weight = np.float32(weight)
    eu = np.empty(d, dtype=np.float32)  # the user's row, and its gradient summed over the negatives
    gsum = np.empty(d, dtype=np.float32)
    # unsigned offsets: numba then indexes without the negative-index check that stops vectorisation
    ru_, ri_, d_ = np.uint64(ru), np.uint64(ri), np.uint64(d)
    for p in range(count):
        if p + _AHEAD_PAIRS < count:
            _prefetch_pair(users, pos, negs, gu, gp, gn, p + _AHEAD_PAIRS, FU, GU, ru, FI, GI, ri, d, span, gspan)
        bu, bi = np.uint64(users[p]) * ru_, np.uint64(pos[p]) * ri_
        x_pos = np.float32(0.0)
        for k in range(d_):
            eu[k] = FU[bu + k]
            gsum[k] = 0.0
            x_pos += eu[k] * FI[bi + k]
        w_sum = np.float32(0.0)
        for n in range(negs.shape[1]):
            bj, gj = np.uint64(negs[p, n]) * ri_, np.uint64(gn[p, n]) * d_
            x_neg = np.float32(0.0)
            for k in range(d_):
                x_neg += eu[k] * FI[bj + k]
            z = x_pos - x_neg
            e = math.exp(-abs(z))
            loss += max(-z, np.float32(0.0)) + math.log1p(e)  # −log σ(z) = softplus(−z), without overflow
            w = weight * (e if z >= 0 else np.float32(1.0)) / (np.float32(1.0) + e)  # weight · σ(−z) = −∂(weight · loss)/∂z
            w_sum += w
            for k in range(d_):
                gsum[k] += w * FI[bj + k]
                GI[gj + k] += w * eu[k]
        gbu, gbi = np.uint64(gu[p]) * d_, np.uint64(gp[p]) * d_
        for k in range(d_):
            GU[gbu + k] += gsum[k] - w_sum * FI[bi + k]
            GI[gbi + k] -= w_sum * eu[k]
    return loss


@_jit(inline="always")
def _prefetch_pair(users, pos, negs, gu, gp, gn, p, FU, GU, ru, FI, GI, ri, d, span, gspan):
    """Prefetches what pair ``p`` of the batch reads and writes: ``span`` elements of its rows and
    ``gspan`` of their gradient rows (see :func:`_step`)."""
    prefetch(FU, users[p] * ru, span)
    prefetch(GU, gu[p] * d, gspan)
    prefetch(FI, pos[p] * ri, span)
    prefetch(GI, gp[p] * d, gspan)
    for n in range(negs.shape[1]):
        prefetch(FI, negs[p, n] * ri, span)
        prefetch(GI, gn[p, n] * d, gspan)


@_jit(inline="always")
def _whole_rows(rs):
    """Whether the step prefetches a per-row table's row whole (up to 8 cache lines: dim ≤ 42): its
    moments then arrive with its parameters. Longer rows would crowd the caches before the Adam pass."""
    return rs <= 128


@_jit(fastmath=_FLAGS, error_model="numpy")
def _update(users, pos, negs, count, TU, TI, d, work, lr, b1, b2, eps, wd, step, weight):
    """One Adam step on ``weight`` × the summed BPR loss of the first ``count`` pairs; returns the
    unweighted loss. Per-row tables: only the rows the batch touches are updated (``work``: scratch
    for their slots, [batch], [batch], [batch, negatives]); dense ones: every row, as torch's dense
    Adam does. Gradients are zero before and after."""
    step_size, inv_c2 = adam_scales(lr, b1, b2, step)
    if TU[2].shape[0] == 0:  # dense tables: row r's gradient is at slot r
        loss = _step(users, pos, negs, count, TU, TI, d, users, pos, negs, weight)
        _adam_all(TU, step_size, inv_c2, b1, b2, eps, wd)
        _adam_all(TI, step_size, inv_c2, b1, b2, eps, wd)
        return loss
    gu, gp, gn = work
    ku = assign_slots(users[:count], TU[2], TU[3], 0, gu)
    ki = assign_slots(pos[:count], TI[2], TI[3], 0, gp)
    ki = assign_slots(negs[:count].reshape(-1), TI[2], TI[3], ki, gn[:count].reshape(-1))
    loss = _step(users, pos, negs, count, TU, TI, d, gu, gp, gn, weight)
    _adam_rows(TU, ku, d, step_size, inv_c2, b1, b2, eps, wd)
    _adam_rows(TI, ki, d, step_size, inv_c2, b1, b2, eps, wd)
    return loss


@_jit(fastmath=_FLAGS, error_model="numpy")
def _adam_rows(T, k, d, step_size, inv_c2, b1, b2, eps, wd):
    """The Adam update of the ``k`` rows that hold gradient slots, in slot order; frees the slots."""
    F, G, slot_of, touched, rs, ss = T
    for s in range(k):
        if s + _AHEAD_ROWS < k:  # the whole row: the parameters a long row's step fetched may have left the caches
            prefetch(F, touched[s + _AHEAD_ROWS] * rs, rs)
        r = touched[s]
        b = r * rs
        adam(F[b : b + d], G[s * d : s * d + d], F[b + ss : b + ss + d], F[b + 2 * ss : b + 2 * ss + d], step_size, inv_c2, b1, b2, eps, wd)
        slot_of[r] = -1


@_jit(fastmath=_FLAGS, error_model="numpy")
def _adam_all(T, step_size, inv_c2, b1, b2, eps, wd):
    """The Adam update of every row of a dense table."""
    F, G, _, _, _, ss = T
    adam(F[:ss], G, F[ss : 2 * ss], F[2 * ss : 3 * ss], step_size, inv_c2, b1, b2, eps, wd)


@_jit(inline="always")
def _next(state):
    """xorshift64* on a one-element uint64 array: the next 32 random bits."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    return (x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)


@_jit(inline="always")
def _below(state, n):
    """A uniform integer in [0, n) (n < 2³²; Lemire's multiply-shift, bias below n / 2³²)."""
    return np.int64((_next(state) * np.uint64(n)) >> np.uint64(32))


# Records per bucket of the epoch's shuffle, on average: a bucket (about 0.8 MB at 4 negatives) is
# shuffled within the core's second-level cache.
_BUCKET_RECORDS = 1 << 15


@_jit()
def _epoch_pairs(indptr, indices, n_items, n_buckets, state, bucket_of, rec_u, rec_i, rec_n, row_bits):
    """Fills the records (rec_u[p], rec_i[p], rec_n[p, :]) with every training pair (user, positive)
    of the CSR rows (``indices`` sorted within each row) and its negatives, in a uniformly random order.

    The negatives are drawn user by user, uniformly outside the user's training row (rejection, with
    replacement within a pair), against ``row_bits``: a scratch bitmap of the catalogue (all clear
    before and after) in which only the current user's items are set, small enough to stay in the
    core's caches. Each pair goes to one of ``n_buckets`` buckets, uniformly at random, the buckets
    filled in turn; then each bucket is shuffled (Fisher–Yates). Buckets of multinomial sizes, each
    in a uniformly random order, make a uniformly random order of all pairs, and the writes and swaps
    stay within a few cache-resident regions instead of spanning the whole log."""
    n = rec_u.shape[0]
    start = np.zeros(n_buckets + 1, dtype=np.int64)
    for p in range(n):
        b = _below(state, n_buckets)
        bucket_of[p] = b
        start[b + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    at = start[:-1].copy()
    n_neg = rec_n.shape[1]
    for u in range(indptr.shape[0] - 1):
        lo, hi = indptr[u], indptr[u + 1]
        for q in range(lo, hi):
            row_bits[indices[q] >> 3] |= np.uint8(1 << (indices[q] & 7))
        for q in range(lo, hi):
            x = at[bucket_of[q]]
            at[bucket_of[q]] = x + 1
            rec_u[x] = u
            rec_i[x] = indices[q]
            for c in range(n_neg):
                j = _below(state, n_items)
                while (row_bits[j >> 3] >> (j & 7)) & 1:
                    j = _below(state, n_items)
                rec_n[x, c] = j
        for q in range(lo, hi):
            row_bits[indices[q] >> 3] = 0
    for b in range(n_buckets):
        lo = start[b]
        for p in range(start[b + 1] - 1, lo, -1):
            q = lo + _below(state, p - lo + 1)
            rec_u[p], rec_u[q] = rec_u[q], rec_u[p]
            rec_i[p], rec_i[q] = rec_i[q], rec_i[p]
            for c in range(n_neg):
                rec_n[p, c], rec_n[q, c] = rec_n[q, c], rec_n[p, c]


@_jit(fastmath=_FLAGS, error_model="numpy")
def _train(indptr, indices, n_items, batch, seed, records, TU, TI, d, lr, b1, b2, eps, wd, step, weight):
    """One epoch on the tables ``TU`` / ``TI``: draw the epoch's records (:func:`_epoch_pairs`;
    ``records`` = its arrays), then take an Adam step per mini-batch of them, in order. Returns
    (summed batch losses, batches)."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    bucket_of, rec_u, rec_i, rec_n, row_bits = records
    n = rec_u.shape[0]
    _epoch_pairs(indptr, indices, n_items, max(1, n // _BUCKET_RECORDS), state, bucket_of, rec_u, rec_i, rec_n, row_bits)
    n_neg = rec_n.shape[1]
    work = np.empty(batch, dtype=np.int64), np.empty(batch, dtype=np.int64), np.empty((batch, n_neg), dtype=np.int64)
    total = 0.0
    n_batches = 0
    for lo in range(0, n, batch):
        count = min(batch, n - lo)
        step += 1
        total += _update(rec_u[lo : lo + count], rec_i[lo : lo + count], rec_n[lo : lo + count], count, TU, TI, d, work, lr, b1, b2, eps, wd, step, weight)
        n_batches += 1
    return total, n_batches


def eligible(model, methods, config, dist) -> str | None:
    """Why the fused path cannot train this run (None when it can)."""
    from training.models.mf import MF

    if type(model) is not MF:
        return f"model.family is '{config.model.family}' (the fused path trains plain matrix factorisation, 'mf')"
    if model.tower is not None:
        return "model.tower is 'mlp' (the fused path trains plain matrix factorisation, no tower)"
    if config.base_loss() != "bpr":
        return f"the base loss is '{config.base_loss()}' (the fused path trains the BPR loss)"
    if config.train.base_loss_weight <= 0:
        return "train.base_loss_weight is 0 (nothing for the fused path to train)"
    if len(methods):
        return "distillation methods are configured (they need the torch path's autograd)"
    if dist.world_size > 1:
        return "training is distributed over several processes"
    return None


class Tables:
    """An embedding table and its Adam state in one flat, cache-line-aligned float32 buffer, with its
    gradients beside it, laid out as the kernels read them (see the comment above :func:`_step`).

    ``rows_per_step``: None for the dense layout (every row updated every step); else the per-row
    layout, with gradient slots for that many rows (the most one step can touch)."""

    def __init__(self, n: int, d: int, rows_per_step: int | None):
        self.n, self.d = n, d
        if rows_per_step is not None:
            self.row_stride, self.segment_stride = -(-3 * d // 16) * 16, d  # whole 64-byte lines per row
            size = n * self.row_stride
            self.grad = np.zeros(min(n, rows_per_step) * d, dtype=np.float32)
            self.slot_of = np.full(n, -1, dtype=np.int32)
            self.touched = np.zeros(min(n, rows_per_step), dtype=np.int32)
        else:
            self.row_stride, self.segment_stride = d, n * d
            size = 3 * n * d
            self.grad = np.zeros(n * d, dtype=np.float32)
            self.slot_of = self.touched = np.zeros(0, dtype=np.int32)
        raw = np.zeros(size + 16, dtype=np.float32)
        skip = (-raw.ctypes.data % 64) // 4
        self.buffer = raw[skip : skip + size]

    @property
    def per_row(self) -> bool:
        """Whether this is the per-row layout (the kernels tell it the same way: ``slot_of`` not empty)."""
        return self.slot_of.size > 0

    def kernel_args(self) -> tuple:
        """The table as the kernels take it."""
        return self.buffer, self.grad, self.slot_of, self.touched, self.row_stride, self.segment_stride

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[n, d] views of the parameters and the two moments."""
        if self.per_row:
            rows = self.buffer.reshape(self.n, self.row_stride)
            return rows[:, : self.d], rows[:, self.d : 2 * self.d], rows[:, 2 * self.d : 3 * self.d]
        P, M, V = self.buffer.reshape(3, self.n, self.d)
        return P, M, V

    def load(self, params: np.ndarray, m: np.ndarray, v: np.ndarray) -> None:
        P, M, V = self.segments()
        P[...], M[...], V[...] = params, m, v

    def store(self, params: np.ndarray, m: np.ndarray, v: np.ndarray) -> None:
        P, M, V = self.segments()
        params[...], m[...], v[...] = P, M, V


class FusedBPR:
    """Trains an :class:`~training.models.mf.MF` model with BPR through the fused kernels, updating
    its embedding tables and ``optimizer``'s Adam state in place."""

    def __init__(self, model, optimizer: torch.optim.Adam, dataset, config):
        self.tc = config.train
        self.loss_weight = float(config.train.base_loss_weight)
        self.U = model.user_emb.weight.data.numpy()
        self.I = model.item_emb.weight.data.numpy()
        self.optimizer = optimizer
        group = optimizer.param_groups[0]
        self.b1, self.b2 = group["betas"]
        self.eps = group["eps"]
        train = dataset.train.tocsr()
        train.sort_indices()
        self.indptr = train.indptr.astype(np.int64)
        self.indices = train.indices.astype(np.int32)
        self.n_items = dataset.n_items
        full = np.flatnonzero(np.diff(self.indptr) >= self.n_items)
        if len(full):
            raise TrainingError(
                f"user index {full[0]} has every one of the {self.n_items} items in training, so no negative can be drawn "
                "for it; remove such users from the training data."
            )
        n = len(self.indices)
        # the epoch's records (see _epoch_pairs): bucket of each pair, users, positives, negatives; the user-row bitmap
        self.records = (
            np.empty(n, dtype=np.int32),
            np.empty(n, dtype=np.int32),
            np.empty(n, dtype=np.int32),
            np.empty((n, self.tc.negatives), dtype=np.int32),
            np.zeros((self.n_items + 7) // 8, dtype=np.uint8),
        )
        self.params = (model.user_emb.weight, model.item_emb.weight)
        self.adam_rows = self.tc.adam_rows_for(dataset.n_users, dataset.n_items)
        batch, per_row = self.tc.batch_size, self.adam_rows == "batch"
        self.tables = (
            Tables(*self.U.shape, batch if per_row else None),
            Tables(*self.I.shape, batch * (1 + self.tc.negatives) if per_row else None),
        )

    def epoch(self, rng: np.random.Generator) -> dict[str, float]:
        """One epoch; returns the mean summed-batch loss under the torch path's keys."""
        seed = int(rng.integers(0, 2**63 - 1))
        group = self.optimizer.param_groups[0]  # read every epoch: a scheduler may change lr
        (mu, vu, step_u), (mi, vi, step_i) = (adam_state(self.optimizer, p) for p in self.params)
        MU, VU, MI, VI = mu.numpy(), vu.numpy(), mi.numpy(), vi.numpy()
        step = int(step_u.item())
        tu, ti = self.tables
        tu.load(self.U, MU, VU)
        ti.load(self.I, MI, VI)
        total, n_batches = _train(
            self.indptr,
            self.indices,
            self.n_items,
            self.tc.batch_size,
            seed,
            self.records,
            tu.kernel_args(),
            ti.kernel_args(),
            tu.d,
            float(group["lr"]),
            float(self.b1),
            float(self.b2),
            float(self.eps),
            float(group["weight_decay"]),
            step,
            self.loss_weight,
        )
        tu.store(self.U, MU, VU)
        ti.store(self.I, MI, VI)
        step_u.fill_(step + n_batches)
        step_i.fill_(step + n_batches)
        base = total / max(1, n_batches)
        return {"base": base, "total": self.loss_weight * base}
