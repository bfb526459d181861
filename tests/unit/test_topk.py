"""The compiled top-K with an excluded set against a numpy reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.evaluation.topk import topk_excluding_rows


def test_topk_matches_a_masked_argsort_and_ranks_excluded_items_last():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 40)).astype(np.float32)
    excluded = sp.random(50, 40, density=0.3, format="csr", random_state=1)
    excluded.sort_indices()
    rows = rng.choice(50, size=30, replace=False)
    got = topk_excluding_rows(scores, rows, excluded, 10)
    masked = scores.astype(np.float64).copy()
    for b, r in enumerate(rows):
        masked[b, excluded[r].indices] = -np.inf
    np.testing.assert_array_equal(got, np.argsort(-masked, axis=1, kind="stable")[:, :10])
    # a row with fewer allowed items than k: the allowed ones first, then excluded ones
    full = sp.csr_matrix(np.array([[1, 1, 0, 1, 1]], dtype=np.float32))
    top = topk_excluding_rows(np.array([[5.0, 4.0, 1.0, 3.0, np.nan]], dtype=np.float32), np.array([0]), full, 3)
    assert top[0, 0] == 2 and set(top[0, 1:]) <= {0, 1, 3, 4}
