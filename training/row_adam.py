"""Adam on the rows a step touches (``train.adam_rows: batch``), and the Adam arithmetic both
training loops share.

torch's Adam updates every row of an embedding table every step: the rows the mini-batch did not
touch get a zero gradient, their moments decay and their parameters still move. With the tables of
a large catalogue that dense pass (and, on the torch loop, the dense gradients autograd builds for
every lookup) costs more per step than the mini-batch itself and grows with the tables. The per-row
step updates only the rows with a gradient, with torch's arithmetic for them (coupled L2 weight
decay, bias correction by the global step count); the other rows keep their parameters and moments.

On the torch loop, :func:`training.models.row_grads.mark_row_grads` marks a model's embedding
tables so that the lookups that read them record row gradients instead of a dense one, and
:func:`row_adam_step` applies the per-row step to them; where a table still receives a dense
gradient (a lookup written as plain indexing) its rows with a non-zero gradient count as touched.
The moments live in the optimizer's state under torch's keys, so checkpoints, resume and
the fused loop read them unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.kernels import _jit, assign_slots

# reassoc + contract + arcp let the loops vectorise; the numpy error model has no zero-division branch.
_FLAGS = {"reassoc", "contract", "arcp"}


@_jit()
def adam_scales(lr, b1, b2, step):
    """Adam's bias-corrected step size lr / (1 − β₁ᵗ) and 1 / √(1 − β₂ᵗ), once per step."""
    return np.float32(lr / (1.0 - b1**step)), np.float32(1.0 / math.sqrt(1.0 - b2**step))


@_jit(fastmath=_FLAGS, error_model="numpy")
def adam(P, G, M, V, step_size, inv_c2, b1, b2, eps, wd):
    """torch.optim.Adam's update with coupled L2 weight decay of parameters P from gradients G and
    moments M, V (equal-length 1-D views); clears the gradients."""
    b1f, b2f, wdf, epsf = np.float32(b1), np.float32(b2), np.float32(wd), np.float32(eps)
    one = np.float32(1.0)
    for x in range(P.shape[0]):
        g = G[x] + wdf * P[x]
        m = b1f * M[x] + (one - b1f) * g
        v = b2f * V[x] + (one - b2f) * g * g
        M[x] = m
        V[x] = v
        P[x] -= step_size * m / (math.sqrt(v) * inv_c2 + epsf)
        G[x] = 0.0


@_jit(fastmath=_FLAGS, error_model="numpy")
def _adam_listed_rows(P, M, V, index, values, slot_of, lr, b1, b2, eps, wd, step):
    """The Adam step ``step`` of the rows of the [n, d] tables P, M, V named in ``index``, row
    index[x] with gradient values[x] (a row named more than once: the sum of its values).
    ``slot_of``: the table's slot map, all −1, left so."""
    slots, rows = np.empty_like(index), np.empty_like(index)
    k = assign_slots(index, slot_of, rows, 0, slots)
    sums = np.zeros((k, P.shape[1]), dtype=np.float32)
    for x in range(index.shape[0]):
        sums[slots[x]] += values[x]
    step_size, inv_c2 = adam_scales(lr, b1, b2, step)
    for s in range(k):
        r = rows[s]
        adam(P[r], sums[s], M[r], V[r], step_size, inv_c2, b1, b2, eps, wd)
        slot_of[r] = -1


def adam_state(optimizer: torch.optim.Adam, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The optimizer's (exp_avg, exp_avg_sq, step) of ``p``, created as torch creates them."""
    state = optimizer.state[p]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state["exp_avg"], state["exp_avg_sq"], state["step"]


def row_adam_step(optimizer: torch.optim.Adam, tables: list[torch.Tensor]) -> None:
    """One Adam step on the rows of each of ``tables`` (marked by
    :func:`training.models.row_grads.mark_row_grads`; all of one parameter group of
    ``optimizer``, with its hyper-parameters) that got a gradient: the row gradients of the lookups,
    plus the rows of ``table.grad`` that are not zero where a lookup was plain indexing. Consumes the
    gradients, so that ``optimizer.step()`` then skips the tables."""
    group = optimizer.param_groups[0]
    b1, b2 = group["betas"]
    from training.models.row_grads import recorded_row_grads, row_slots

    for p in tables:
        parts = recorded_row_grads(p)
        if p.grad is not None:
            index = (p.grad != 0).any(1).nonzero().squeeze(1)
            parts.append((index, p.grad[index]))
            p.grad = None
        if not parts:
            continue
        index = torch.cat([i for i, _ in parts]) if len(parts) > 1 else parts[0][0]
        values = torch.cat([v for _, v in parts]) if len(parts) > 1 else parts[0][1]
        parts.clear()
        m, v, step = adam_state(optimizer, p)
        step += 1
        with torch.no_grad():
            _adam_listed_rows(
                p.detach().numpy(),
                m.numpy(),
                v.numpy(),
                index.contiguous().numpy(),
                values.contiguous().numpy(),
                row_slots(p),
                float(group["lr"]),
                float(b1),
                float(b2),
                float(group["eps"]),
                float(group["weight_decay"]),
                int(step.item()),
            )
