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

The Adam moments live in the torch optimizer's own state tensors (shared memory), so checkpoints,
resume and switching between the two paths keep working unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.kernels import _jit
from training.prefetch import prefetch

# reassoc + contract + arcp let the loops vectorise; the numpy error model has no zero-division branch.
_FLAGS = {"reassoc", "contract", "arcp"}
# How far ahead the loops prefetch (pairs of the batch; rows of the Adam pass; pairs of the shuffled
# order): far enough to hide a miss to memory behind the work in between, near enough that the rows
# are still cached when used. Prefetching changes no result; at MovieLens-20M's shape it saves about
# a quarter of the student's epoch (docs/benchmarks.md, "The training epoch").
_AHEAD_PAIRS, _AHEAD_ROWS, _AHEAD_ORDER = 4, 8, 16


@_jit(fastmath=_FLAGS, error_model="numpy")
def _step(users, pos, negs, count, U, I, MU, VU, MI, VI, gU, gI, lr, b1, b2, eps, wd, step, weight, seen_u, seen_i, lazy):
    """One Adam step on ``weight`` × the summed BPR loss of the first ``count`` pairs (users[p],
    pos[p], negs[p, :]); ``gU`` / ``gI`` must be zero and are left zero. Returns the unweighted loss.

    ``lazy``: update only the rows the batch touches (``seen_*``: all-False scratch flags per row,
    left all-False), else every row as torch's dense Adam does."""
    d = U.shape[1]
    loss = 0.0
    weight = np.float32(weight)
    eu = np.empty(d, dtype=np.float32)  # the user's row, and its gradient summed over the negatives
    gu = np.empty(d, dtype=np.float32)
    for p in range(count):
        if p + _AHEAD_PAIRS < count:
            _prefetch_pair(users, pos, negs, p + _AHEAD_PAIRS, U, I, gU, gI)
        u, i = users[p], pos[p]
        x_pos = np.float32(0.0)
        for k in range(d):
            eu[k] = U[u, k]
            gu[k] = 0.0
            x_pos += eu[k] * I[i, k]
        w_sum = np.float32(0.0)
        for n in range(negs.shape[1]):
            j = negs[p, n]
            x_neg = np.float32(0.0)
            for k in range(d):
                x_neg += eu[k] * I[j, k]
            z = x_pos - x_neg
            e = math.exp(-abs(z))
            loss += max(-z, np.float32(0.0)) + math.log1p(e)  # −log σ(z) = softplus(−z), without overflow
            w = weight * (e if z >= 0 else np.float32(1.0)) / (np.float32(1.0) + e)  # weight · σ(−z) = −∂(weight · loss)/∂z
            w_sum += w
            for k in range(d):
                gu[k] += w * I[j, k]
                gI[j, k] += w * eu[k]
        for k in range(d):
            gU[u, k] += gu[k] - w_sum * I[i, k]
            gI[i, k] -= w_sum * eu[k]
    step_size, inv_c2 = _adam_scales(lr, b1, b2, step)
    if lazy:
        _adam_touched(users[:count], U, MU, VU, gU, seen_u, step_size, inv_c2, b1, b2, eps, wd)
        _adam_touched(pos[:count], I, MI, VI, gI, seen_i, step_size, inv_c2, b1, b2, eps, wd)
        _adam_touched(negs[:count].reshape(-1), I, MI, VI, gI, seen_i, step_size, inv_c2, b1, b2, eps, wd)
        for p in range(count):
            seen_u[users[p]] = False
            seen_i[pos[p]] = False
            for n in range(negs.shape[1]):
                seen_i[negs[p, n]] = False
        return loss
    _adam(U.reshape(-1), MU.reshape(-1), VU.reshape(-1), gU.reshape(-1), step_size, inv_c2, b1, b2, eps, wd)
    _adam(I.reshape(-1), MI.reshape(-1), VI.reshape(-1), gI.reshape(-1), step_size, inv_c2, b1, b2, eps, wd)
    for p in range(count):  # the gradients are non-zero only on the rows this batch touched
        gU[users[p], :] = 0.0
        gI[pos[p], :] = 0.0
        for n in range(negs.shape[1]):
            gI[negs[p, n], :] = 0.0
    return loss


@_jit(inline="always")
def _prefetch_pair(users, pos, negs, p, U, I, gU, gI):
    """Prefetches the rows pair ``p`` of the batch reads and writes: its user's, its positive's and its negatives'."""
    prefetch(U, users[p])
    prefetch(gU, users[p])
    prefetch(I, pos[p])
    prefetch(gI, pos[p])
    for n in range(negs.shape[1]):
        prefetch(I, negs[p, n])
        prefetch(gI, negs[p, n])


@_jit()
def _adam_scales(lr, b1, b2, step):
    """Adam's bias-corrected step size lr / (1 − β₁ᵗ) and 1 / √(1 − β₂ᵗ), once per step."""
    return np.float32(lr / (1.0 - b1**step)), np.float32(1.0 / math.sqrt(1.0 - b2**step))


@_jit(fastmath=_FLAGS, error_model="numpy")
def _adam_touched(rows, P, M, V, G, seen, step_size, inv_c2, b1, b2, eps, wd):
    """The Adam update of each row listed in ``rows`` (repeats allowed) that ``seen`` does not mark
    yet: marks it, updates it (one vectorised pass over the row) and clears its gradient. ``seen``
    stays set, so a later call in the same step skips these rows; :func:`_step` clears it."""
    n = rows.shape[0]
    for x in range(n):
        if x + _AHEAD_ROWS < n:
            later = rows[x + _AHEAD_ROWS]
            prefetch(P, later)
            prefetch(M, later)
            prefetch(V, later)
            prefetch(G, later)
        r = rows[x]
        if not seen[r]:
            seen[r] = True
            _adam(P[r], M[r], V[r], G[r], step_size, inv_c2, b1, b2, eps, wd)
            G[r, :] = 0.0


@_jit(fastmath=_FLAGS, error_model="numpy")
def _adam(P, M, V, G, step_size, inv_c2, b1, b2, eps, wd):
    """torch.optim.Adam's update with coupled L2 weight decay, on every element (as torch's dense Adam)."""
    b1f, b2f, wdf, epsf = np.float32(b1), np.float32(b2), np.float32(wd), np.float32(eps)
    one = np.float32(1.0)
    for x in range(P.shape[0]):
        g = G[x] + wdf * P[x]
        m = b1f * M[x] + (one - b1f) * g
        v = b2f * V[x] + (one - b2f) * g * g
        M[x] = m
        V[x] = v
        P[x] -= step_size * m / (math.sqrt(v) * inv_c2 + epsf)


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


@_jit()
def _shuffle(order, state):
    for p in range(order.shape[0]):
        order[p] = p
    for p in range(order.shape[0] - 1, 0, -1):  # Fisher–Yates
        q = _below(state, p + 1)
        order[p], order[q] = order[q], order[p]


@_jit()
def _draw_negatives(u, indptr, indices, bitmap, n_items, state, out, row):
    """Fills out[row, :] with items drawn uniformly outside user u's sorted training row (rejection).

    ``bitmap`` (one bit per (user, item), see :func:`training_bitmap`) answers membership with one
    load; an empty one falls back to a binary search in the row. Both accept the same draws."""
    lo0, hi0 = indptr[u], indptr[u + 1]
    for c in range(out.shape[1]):
        while True:
            j = _below(state, n_items)
            if bitmap.shape[0]:
                if not (bitmap[u, j >> 3] >> (j & 7)) & 1:
                    break
                continue
            base, size = lo0, hi0 - lo0  # branch-free binary search for j in the sorted row
            while size > 1:
                half = size >> 1
                base = base + half if indices[base + half] <= j else base
                size -= half
            if size == 0 or indices[base] != j:
                break
        out[row, c] = j


@_jit(fastmath=_FLAGS, error_model="numpy")
def _train(users, items, indptr, indices, bitmap, n_items, n_neg, batch, seed, U, I, MU, VU, MI, VI, gU, gI, order, lr, b1, b2, eps, wd, step, weight, lazy):
    """One epoch: shuffle the pairs, then per mini-batch draw the negatives and take an Adam step.
    Returns (summed batch losses, batches)."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) | np.uint64(1)
    _shuffle(order, state)
    bu = np.empty(batch, dtype=np.int64)
    bp = np.empty(batch, dtype=np.int64)
    bn = np.empty((batch, n_neg), dtype=np.int64)
    seen_u = np.zeros(U.shape[0], dtype=np.bool_)
    seen_i = np.zeros(I.shape[0], dtype=np.bool_)
    total = 0.0
    n_batches = 0
    n = users.shape[0]
    for lo in range(0, n, batch):
        count = min(batch, n - lo)
        for p in range(count):
            if lo + p + _AHEAD_ORDER < n:
                later = order[lo + p + _AHEAD_ORDER]
                prefetch(users, later)
                prefetch(items, later)
            q = order[lo + p]
            bu[p], bp[p] = users[q], items[q]
        for p in range(count):
            _draw_negatives(bu[p], indptr, indices, bitmap, n_items, state, bn, p)
        step += 1
        total += _step(bu, bp, bn, count, U, I, MU, VU, MI, VI, gU, gI, lr, b1, b2, eps, wd, step, weight, seen_u, seen_i, lazy)
        n_batches += 1
    return total, n_batches


def resolve_adam_rows(setting: str, n_users: int, n_items: int, batch_size: int, negatives: int) -> str:
    """``train.adam_rows`` as the fused loop applies it: 'all' or 'batch'.

    'auto' keeps torch's dense step (every row of both tables) while the tables hold no more rows than
    one mini-batch can touch, ``batch_size × (2 + negatives)`` (its users, positives and negatives):
    there the dense pass costs at most what the per-row pass would, and the run is the same
    optimisation as the torch loop's. Beyond that the dense pass grows with the tables while the
    batch's work does not, so 'auto' updates only the touched rows."""
    if setting != "auto":
        return setting
    return "all" if n_users + n_items <= batch_size * (2 + negatives) else "batch"


# 1 GiB: MovieLens-20M's 138,493 users × 26,744 items take 442 MiB. One bitmap load per draw is 7×
# cheaper there than a binary search in the user's row, whose dependent loads miss the caches.
BITMAP_MAX_BITS = 1 << 33


def training_bitmap(indptr: np.ndarray, indices: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """uint8 [n_users, ⌈n_items / 8⌉]: bit ``j % 8`` of byte ``j // 8`` of row ``u`` is set when user u
    has item j in training (``indices`` sorted within each row); an empty [0, 0] array when that would
    exceed ``BITMAP_MAX_BITS``."""
    if n_users * n_items > BITMAP_MAX_BITS:
        return np.zeros((0, 0), dtype=np.uint8)
    stride = (n_items + 7) // 8
    bitmap = np.zeros((n_users, stride), dtype=np.uint8)
    if len(indices):
        byte = np.repeat(np.arange(n_users, dtype=np.int64) * stride, np.diff(indptr)) + (indices >> 3)  # ascending
        first = np.flatnonzero(np.concatenate([[True], byte[1:] != byte[:-1]]))
        bitmap.reshape(-1)[byte[first]] = np.bitwise_or.reduceat((1 << (indices & 7)).astype(np.uint8), first)
    return bitmap


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


class FusedBPR:
    """Trains an :class:`~training.models.mf.MF` model with BPR through the fused kernels, updating
    its embedding tables and ``optimizer``'s Adam state in place."""

    def __init__(self, model, optimizer: torch.optim.Adam, dataset, users: np.ndarray, items: np.ndarray, config):
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
        self.indices = train.indices.astype(np.int64)
        self.n_items = dataset.n_items
        self.bitmap = training_bitmap(self.indptr, self.indices, dataset.n_users, dataset.n_items)
        self.users = users.astype(np.int64)
        self.items = items.astype(np.int64)
        self.params = (model.user_emb.weight, model.item_emb.weight)
        self.gU = np.zeros_like(self.U)
        self.gI = np.zeros_like(self.I)
        self.order = np.empty(len(self.users), dtype=np.int64)
        self.adam_rows = resolve_adam_rows(self.tc.adam_rows, dataset.n_users, dataset.n_items, self.tc.batch_size, self.tc.negatives)

    def _moments(self, p: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """The optimizer's (exp_avg, exp_avg_sq, step) of ``p``, created as torch creates them."""
        state = self.optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["exp_avg"].numpy(), state["exp_avg_sq"].numpy(), state["step"]

    def epoch(self, rng: np.random.Generator) -> dict[str, float]:
        """One epoch; returns the mean summed-batch loss under the torch path's keys."""
        seed = int(rng.integers(0, 2**63 - 1))
        group = self.optimizer.param_groups[0]  # read every epoch: a scheduler may change lr
        MU, VU, step_u = self._moments(self.params[0])
        MI, VI, step_i = self._moments(self.params[1])
        step = int(step_u.item())
        total, n_batches = _train(
            self.users,
            self.items,
            self.indptr,
            self.indices,
            self.bitmap,
            self.n_items,
            self.tc.negatives,
            self.tc.batch_size,
            seed,
            self.U,
            self.I,
            MU,
            VU,
            MI,
            VI,
            self.gU,
            self.gI,
            self.order,
            float(group["lr"]),
            float(self.b1),
            float(self.b2),
            float(self.eps),
            float(group["weight_decay"]),
            step,
            self.loss_weight,
            self.adam_rows == "batch",
        )
        step_u.fill_(step + n_batches)
        step_i.fill_(step + n_batches)
        base = total / max(1, n_batches)
        return {"base": base, "total": self.loss_weight * base}
