"""Uniform sampling outside an excluded set."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from training.sampling import excluded_keys, sample_excluding


def _excluded(n_users=50, n_items=30, density=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def test_never_samples_excluded_items_and_rows_are_unique():
    ex = _excluded()
    users = np.arange(ex.shape[0])
    out = sample_excluding(np.random.default_rng(1), users, ex, 5, unique=True)
    dense = ex.toarray()
    assert out.shape == (50, 5)
    assert not dense[users[:, None], out].any()
    assert all(len(set(row)) == 5 for row in out.tolist())


def test_deterministic_given_seed_and_covers_allowed_items():
    ex = _excluded()
    a = sample_excluding(np.random.default_rng(3), np.zeros(4000, dtype=np.int64), ex, 1, unique=False)
    b = sample_excluding(np.random.default_rng(3), np.zeros(4000, dtype=np.int64), ex, 1, unique=False)
    assert (a == b).all()
    allowed = np.flatnonzero(ex.toarray()[0] == 0)
    assert set(a.ravel().tolist()) == set(allowed.tolist())  # uniform: every allowed item shows up


def test_precomputed_keys_and_too_few_items():
    ex = _excluded()
    out = sample_excluding(np.random.default_rng(0), np.array([2, 2, 7]), excluded_keys(ex), 2, unique=False, n_items=30)
    assert not ex.toarray()[np.array([2, 2, 7])[:, None], out].any()
    full = sp.csr_matrix(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="allowed items"):
        sample_excluding(np.random.default_rng(0), np.array([0]), full, 1)
