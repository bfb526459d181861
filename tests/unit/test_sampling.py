"""Uniform sampling outside an excluded set."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from training import sampling
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


def test_large_inputs_draw_in_chunks_with_the_same_guarantees(monkeypatch):
    excluded = sp.csr_matrix(np.array([[1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=np.float32))
    users = np.tile([0, 1, 2], 400)
    whole = sampling.sample_excluding(np.random.default_rng(5), users, excluded, 1, unique=False)
    monkeypatch.setattr(sampling, "CHUNK_CANDIDATES", 50)  # 5 rows of width 9 per chunk
    calls = []
    draw = sampling._draw
    monkeypatch.setattr(sampling, "_draw", lambda *a: calls.append(len(a[1])) or draw(*a))
    chunked = sampling.sample_excluding(np.random.default_rng(5), users, excluded, 1, unique=False)
    assert calls == [5] * 240 and chunked.shape == whole.shape == (1200, 1)
    for out in (whole, chunked):
        assert set(out[users == 0, 0]) == {2, 3, 5} and set(out[users == 1, 0]) == {0, 1, 2, 4, 5} and set(out[users == 2, 0]) == {5}
    unique = sampling.sample_excluding(np.random.default_rng(5), np.array([0, 1] * 20), excluded, 3, unique=True)
    assert all(len(set(row)) == 3 for row in unique) and set(unique[::2].ravel()) == {2, 3, 5}


def test_small_inputs_draw_exactly_as_in_one_pass():
    excluded = sp.random(30, 50, density=0.2, format="csr", random_state=2)
    users = np.arange(30).repeat(7)
    a = sampling.sample_excluding(np.random.default_rng(1), users, excluded, 4, unique=False)
    rows = len(users)
    assert rows * max(8, 12) <= sampling.CHUNK_CANDIDATES
    b = sampling._draw(np.random.default_rng(1), users, sampling.excluded_keys(excluded), 4, False, 50, 12)
    np.testing.assert_array_equal(a, b)
