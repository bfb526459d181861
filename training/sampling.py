"""Vectorised uniform sampling of items outside a per-user excluded set (rejection, no dense masks)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def excluded_keys(excluded: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys ``user * n_items + item`` of the non-zeros of a CSR matrix."""
    m = excluded.tocsr()
    m.sort_indices()
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices.astype(np.int64)


def sample_excluding(
    rng: np.random.Generator,
    users: np.ndarray,
    excluded: sp.csr_matrix | np.ndarray,
    n: int,
    unique: bool = True,
    n_items: int | None = None,
) -> np.ndarray:
    """Draws ``n`` items per row uniformly from the items *not* in ``excluded[users[row]]``.

    Args:
        rng: the random generator (determinism comes from its seed).
        users: int array [r]; row r samples for user ``users[r]`` (users may repeat).
        excluded: CSR [n_users, n_items] of forbidden (user, item) pairs, or its precomputed
            :func:`excluded_keys` (then ``n_items`` is required).
        n: items per row.
        unique: sample without replacement within a row.

    Returns:
        int64 [r, n]. Rejection sampling: rows are redrawn until each has ``n`` valid items, so the
        cost is O(r·n·log nnz) and never O(r·n_items).

    Raises:
        ValueError: when some user has fewer than ``n`` allowed items (with ``unique``) or none.
    """
    if isinstance(excluded, sp.spmatrix) or sp.issparse(excluded):
        n_items = excluded.shape[1]
        counts = np.diff(excluded.tocsr().indptr)
        keys = excluded_keys(excluded)
    else:
        if n_items is None:
            raise ValueError("n_items is required with precomputed keys")
        keys = excluded
        counts = None
    users = np.asarray(users, dtype=np.int64)
    if counts is not None and len(users):
        allowed = n_items - counts[users]
        need = n if unique else 1
        if allowed.min() < need:
            r = int(np.argmin(allowed))
            raise ValueError(f"user {users[r]} has only {allowed[r]} allowed items, cannot draw {n}")
    width = max(2 * n, n + 8)
    rows = max(1, CHUNK_CANDIDATES // width)
    if len(users) <= rows:
        return _draw(rng, users, keys, n, unique, n_items, width)
    # in chunks of rows, so that the temporaries stay bounded (about 80 bytes per candidate)
    return np.concatenate([_draw(rng, users[s : s + rows], keys, n, unique, n_items, width) for s in range(0, len(users), rows)])


#: candidates drawn at once: above this, :func:`sample_excluding` works in chunks of users (the
#: temporaries take about 80 bytes per candidate, 1.3 GB here). Smaller inputs draw as they always did.
CHUNK_CANDIDATES = 1 << 24


def _draw(rng: np.random.Generator, users: np.ndarray, keys: np.ndarray, n: int, unique: bool, n_items: int, width: int) -> np.ndarray:
    """The rejection loop of :func:`sample_excluding` for one set of rows."""
    out = np.empty((len(users), n), dtype=np.int64)
    pending = np.arange(len(users))
    while len(pending):
        cand = rng.integers(0, n_items, size=(len(pending), width), dtype=np.int64)
        ckeys = users[pending, None] * n_items + cand
        pos = np.searchsorted(keys, ckeys)
        pos[pos == len(keys)] = 0
        valid = keys[pos] != ckeys if len(keys) else np.ones_like(cand, dtype=bool)
        if unique:
            first = np.zeros(cand.size, dtype=bool)
            order_keys = (np.arange(len(pending), dtype=np.int64)[:, None] * n_items + cand).ravel()
            _, idx = np.unique(order_keys, return_index=True)
            first[idx] = True
            valid &= first.reshape(cand.shape)
        rank = np.cumsum(valid, axis=1)
        done = rank[:, -1] >= n
        take = valid & (rank <= n) & done[:, None]
        out[pending[done]] = cand[take].reshape(-1, n)
        pending = pending[~done]
        width *= 2
    return out
