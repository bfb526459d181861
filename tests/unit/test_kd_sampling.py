"""Per-epoch sampling of the ranking methods: rank-based draws, uninteresting sets, short lists."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from training.distill.common import annealed_temperature, rank_sample_positions
from training.distill.ranking import ListSampler, tournament_log_weights
from training.errors import ConfigError


def test_rank_sampling_is_sorted_unique_and_follows_exp_minus_r_over_t():
    rng = np.random.default_rng(0)
    pos, valid = rank_sample_positions(rng, np.full(20000, 50), k=1, temperature=5.0, n_positions=50)
    assert valid.all()
    freq = np.bincount(pos[:, 0], minlength=50) / len(pos)
    expected = np.exp(-np.arange(1, 51) / 5.0)
    expected /= expected.sum()
    assert np.abs(freq - expected).max() < 0.01
    pos, valid = rank_sample_positions(rng, np.full(500, 50), k=8, temperature=5.0, n_positions=50)
    assert (np.diff(pos, axis=1) > 0).all()  # sorted, hence distinct: the teacher's order is kept


def test_rank_sampling_without_replacement_matches_successive_draws():
    # P(first two draws are {0, 1}) for weights w: w0/W · w1/(W−w0) + w1/W · w0/(W−w1)
    rng = np.random.default_rng(1)
    w = np.exp(-np.arange(1, 5) / 1.0)
    W = w.sum()
    p01 = w[0] / W * w[1] / (W - w[0]) + w[1] / W * w[0] / (W - w[1])
    pos, _ = rank_sample_positions(rng, np.full(40000, 4), k=2, temperature=1.0, n_positions=4)
    assert ((pos[:, 0] == 0) & (pos[:, 1] == 1)).mean() == pytest.approx(p01, abs=0.01)


def test_rank_sampling_short_lists_and_deterministic_variant():
    rng = np.random.default_rng(2)
    pos, valid = rank_sample_positions(rng, np.array([2, 10, 0]), k=4, temperature=10.0, n_positions=10)
    assert valid.tolist()[0] == [True, True, False, False] and valid[1].all() and not valid[2].any()
    assert set(pos[0, :2]) == {0, 1}
    pos, valid = rank_sample_positions(rng, np.array([10, 3]), k=4, temperature=10.0, n_positions=10, deterministic=True)
    assert pos[0].tolist() == [0, 1, 2, 3] and valid[1].tolist() == [True, True, True, False]


def test_list_sampler_uninteresting_avoid_train_and_the_list():
    rng = np.random.default_rng(3)
    n_rows, n_cols = 30, 40
    train = sp.random(n_rows, n_cols, density=0.15, format="csr", random_state=4)
    train.data[:] = 1
    dense = train.toarray() > 0
    lists = np.stack([np.flatnonzero(~dense[r])[rng.permutation((~dense[r]).sum())][:10] for r in range(n_rows)])
    sampler = ListSampler(lists, train, k=5, n_rest=6, temperature=3.0, deterministic=False, what="test")
    cand, valid = (t.numpy() for t in sampler.draw(rng))
    interesting, rest = cand[:, :5], cand[:, 5:]
    for r in range(n_rows):
        assert valid[r].all() and set(interesting[r]) <= set(lists[r])
        order = [list(lists[r]).index(i) for i in interesting[r]]
        assert order == sorted(order)
        assert len(set(rest[r])) == 6 and not dense[r, rest[r]].any() and not set(rest[r]) & set(lists[r])


def test_list_sampler_shortens_lists_to_leave_room_for_uninteresting():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0]], dtype=np.float32))
    lists = np.array([[2, 3, 4, 5, 6, 7]])  # all 6 unobserved items; L = 2 needs 2 outside the list
    sampler = ListSampler(lists, train, k=3, n_rest=2, temperature=1.0, deterministic=True, what="test")
    assert sampler.lengths.tolist() == [4]
    cand, valid = (t.numpy() for t in sampler.draw(np.random.default_rng(0)))
    interesting, rest = cand[:, :3], cand[:, 3:]
    assert interesting[0].tolist() == [2, 3, 4] and sorted(rest[0].tolist()) == [6, 7]
    with pytest.raises(ConfigError, match="fewer than uninteresting"):
        ListSampler(lists, train, k=3, n_rest=6, temperature=1.0, deterministic=True, what="test")


def test_tournament_weights_are_a_distribution_favouring_the_top():
    lw = tournament_log_weights(100, 1.0)
    p = np.exp(lw)
    assert p.sum() == pytest.approx(1.0) and (np.diff(p) < 0).all()


def test_annealed_temperature_is_geometric_and_clipped():
    assert annealed_temperature(0, 1.0, 1e-10, 1000) == 1.0
    assert annealed_temperature(500, 1.0, 1e-10, 1000) == pytest.approx(1e-5)
    assert annealed_temperature(5000, 1.0, 1e-10, 1000) == 1e-10
