"""Numba kernels for the CPU hot paths of training (one thread each, compiled on first use).

Imported lazily (numba takes ~0.25 s to import) by :mod:`training.models.gather_dot` and
:mod:`training.distill.common`. Compiled code is cached on disk, so only the first process pays the
~1–2 s compilation, but only in a **private** folder: ``NUMBA_CACHE_DIR`` if set, else
``~/.cache/distillrec/numba`` (``$XDG_CACHE_HOME`` honoured), created with mode 0700, and used only
when it belongs to the current user and nobody else can write to it. numba's cache files are
pickles, loaded when a kernel is first called, so a cache others can write to would let them run
code in training; such a folder (e.g. a shared ``/tmp/numba`` created by someone else) is ignored
with a warning and every process compiles instead, as it does when no folder is writable.

- :func:`gather_dot_forward` / :func:`gather_dot_backward`: ``<anchor[b], table[cand[b, c]]>`` and
  its gradients, without materialising the b·c gathered rows or sorting for the scatter.
- :func:`assign_slots`: a slot per distinct row read, for gradients of those rows only.
- :func:`relaxed_ranking`: the relaxed listwise loss of RRD / IR / HetComp and its closed-form
  gradient in one pass over each row.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path

import numba
import numpy as np

# reassoc + contract let the d-long dot products vectorise; NaN and inf keep IEEE semantics.
_FLAGS = {"reassoc", "contract"}
_TINY = np.finfo(np.float64).tiny


def private_cache_dir() -> str | None:
    """The folder for numba's cache when it is private to this user (see the module doc), else None."""
    root = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "distillrec", "numba")
    path = Path(root)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        warnings.warn(
            f"numba cache folder {path} is not private (a symlink, another owner, or writable by others); "
            "kernels are compiled without a cache. Set NUMBA_CACHE_DIR to a folder only you can write to.",
            stacklevel=2,
        )
        return None
    return str(path)


_CACHE_DIR = private_cache_dir()
if _CACHE_DIR is not None:
    numba.config.CACHE_DIR = _CACHE_DIR  # read when a cached function is decorated


def _jit(**options):
    """``numba.njit(cache=True, nogil=True, **options)`` with the private cache folder; without the
    cache when there is none, or when numba finds it unusable (it raises RuntimeError then)."""

    def compile_(fn):
        if _CACHE_DIR is not None:
            try:
                return numba.njit(cache=True, nogil=True, **options)(fn)
            except RuntimeError:
                pass
        return numba.njit(nogil=True, **options)(fn)

    return compile_


@_jit(inline="always")
def _table_row(cand, b, c, n):
    row = cand[b, c]
    if row < 0 or row >= n:
        raise IndexError("gather_dot: a candidate index is outside the table")
    return row


@_jit(fastmath=_FLAGS)
def gather_dot_forward(anchor, table, cand, out):
    d = table.shape[1]
    for b in range(cand.shape[0]):
        for c in range(cand.shape[1]):
            row = _table_row(cand, b, c, table.shape[0])
            acc = anchor[b, 0] * table[row, 0]
            for k in range(1, d):
                acc += anchor[b, k] * table[row, k]
            out[b, c] = acc


@_jit(fastmath=_FLAGS)
def gather_dot_backward(anchor, table, cand, slots, g, g_anchor, g_table, need_anchor, need_table):
    """g_anchor[b] += g[b, c] · table[cand[b, c]] and g_table[slots[b, c]] += g[b, c] · anchor[b]:
    ``slots`` is ``cand`` for a gradient of the whole table, else each candidate's place among the
    distinct rows read (:func:`assign_slots`) for a gradient of those rows only."""
    d = table.shape[1]
    for b in range(cand.shape[0]):
        for c in range(cand.shape[1]):
            row = _table_row(cand, b, c, table.shape[0])
            w = g[b, c]
            if need_anchor:
                for k in range(d):
                    g_anchor[b, k] += w * table[row, k]
            if need_table:
                s = slots[b, c]
                for k in range(d):
                    g_table[s, k] += w * anchor[b, k]


@_jit()
def assign_slots(rows, slot_of, read, k, slots):
    """Gives each row listed in ``rows`` (repeats allowed) a slot: the one it has in ``slot_of``, else
    the next free one (``k``: the slots taken so far; −1 in ``slot_of``: none). slots[x] = the slot
    of rows[x], read[s] = the row holding slot s. Returns the slots taken now."""
    for x in range(rows.shape[0]):
        r = rows[x]
        s = slot_of[r]
        if s < 0:
            s = k
            slot_of[r] = k
            read[k] = r
            k += 1
        slots[x] = s
    return k


@_jit()
def relaxed_ranking(ranked, mask, rest, rest_mask, rest_lse, d_ranked, d_rest, d_rest_lse):
    """Σ_rows Σ_k m_k [log S_k − r_k], S_k = Σ_{i ≥ k} m_i e^{r_i} + Σ_j n_j e^{q_j} + e^{ρ}; fills the gradients.

    ranked r / mask m [b, K], rest q / rest_mask n [b, L], rest_lse ρ [b] (−1e30 for none). Each row
    is shifted by its largest valid score and summed in float64; log S_k ≥ r_k − shift always holds,
    so an underflowed S_k falls back to that bound, and each gradient term (≤ K in exact arithmetic)
    is clipped to K: no −∞, ∞ or NaN from finite scores.
    """
    b, k_max = ranked.shape
    n_rest = rest.shape[1]
    bound = float(k_max)
    e = np.empty(k_max)
    s = np.empty(k_max)
    e_rest = np.empty(n_rest)
    total = 0.0
    for row in range(b):
        shift = float(rest_lse[row])
        for k in range(k_max):
            if mask[row, k] and ranked[row, k] > shift:
                shift = float(ranked[row, k])
        for j in range(n_rest):
            if rest_mask[row, j] and rest[row, j] > shift:
                shift = float(rest[row, j])
        e_lse = math.exp(float(rest_lse[row]) - shift)
        acc = e_lse
        for j in range(n_rest):
            e_rest[j] = math.exp(float(rest[row, j]) - shift) if rest_mask[row, j] else 0.0
            acc += e_rest[j]
        for k in range(k_max):
            e[k] = math.exp(float(ranked[row, k]) - shift) if mask[row, k] else 0.0
        for k in range(k_max - 1, -1, -1):
            acc += e[k]
            s[k] = acc
        inv_sum = 0.0  # Σ_{k ≤ i} m_k / S_k
        for k in range(k_max):
            if mask[row, k]:
                z = float(ranked[row, k]) - shift
                log_s = math.log(s[k]) if s[k] > _TINY else z
                total += max(log_s, z) - z
                inv_sum = min(inv_sum + 1.0 / max(s[k], _TINY), 1e300)
                d_ranked[row, k] = min(e[k] * inv_sum, bound) - 1.0
            else:
                d_ranked[row, k] = 0.0
        for j in range(n_rest):
            d_rest[row, j] = min(e_rest[j] * inv_sum, bound)
        d_rest_lse[row] = min(e_lse * inv_sum, bound)
    return total
