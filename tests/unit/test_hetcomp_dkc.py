"""HetComp's dynamic knowledge construction (DKC) and its loss pieces, on hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.data.dataset import Dataset
from training.distill.base import KDContext
from training.distill.hetcomp import (
    HetComp,
    HetCompParams,
    complement_logsumexp,
    discrepancy,
    dkc_threshold,
    dkc_update,
    position_gains,
    relaxed_listmle,
)
from training.ensemble.trajectory import Trajectory
from training.models.mf import MF


# ---------------------------------------------------------------------------------- discrepancy
def test_position_gains_by_hand():
    # (2^{exp(−q/10)} − 1) / log2(q + 2)
    g = position_gains(3)
    assert g[0] == pytest.approx(1.0)
    assert g[1] == pytest.approx((2 ** math.exp(-0.1) - 1) / math.log2(3))  # 0.55038
    assert g[2] == pytest.approx((2 ** math.exp(-0.2) - 1) / 2)  # 0.38193


def test_discrepancy_counts_student_positions_only():
    g0, g1, g2 = 1.0, 0.5503811, 0.3819268  # position_gains(3), by hand
    student = np.array([[7, 8, 9], [7, 8, 9], [7, 8, 9]])
    teacher = np.array([[8, 1, 2, 3], [9, 8, 7, 1], [1, 2, 3, 7]])  # only the first k = 3 entries count
    d = discrepancy(student, teacher, n_items=10, decimals=None)
    assert d[0] == pytest.approx(1 - g1 / (g0 + g1 + g2), abs=1e-6)  # item 8 at student position 1
    assert d[1] == pytest.approx(0.0, abs=1e-12)  # same set, other order: the gains ignore teacher order
    assert d[2] == pytest.approx(1.0)  # 7 is the teacher's 4th item, outside its top 3
    assert discrepancy(student, teacher, 10)[0] == pytest.approx(round(1 - g1 / (g0 + g1 + g2), 4))


# ------------------------------------------------------------------------------------ DKC update
def test_dkc_update_hand_case():
    last = np.array([3])
    # dist[x, c, u] = d(u, π_x^c): rows are checkpoints 0..3, columns the 4 users
    dist = np.array([[[0.9, 0.9, 0.9, 0.9], [0.4, 0.49, 0.6, 0.9], [0.3, 0.3, 0.3, 0.3], [0.2, 0.2, 0.2, 0.2]]])
    v = np.array([[0], [0], [0], [3]])
    stored = np.full((4, 1), 0.5)
    new_v, new_stored, _ = dkc_update(v, stored, dist, last, threshold=1.05, first=False)
    # δ = 0.5/0.4 = 1.25 > θ: advance; 0.5/0.49 = 1.02 ∈ [1, θ]: stay; 0.5/0.6 = 0.83 < 1: advance; v = 3: done
    assert new_v[:, 0].tolist() == [1, 0, 1, 3]
    # after an advance D = d(π^{v+2}) (checkpoint 2); otherwise unchanged
    assert new_stored[:, 0].tolist() == [0.3, 0.5, 0.3, 0.5]
    first_v, first_stored, _ = dkc_update(v, stored, dist, last, threshold=1.05, first=True)
    assert first_v.tolist() == v.tolist()  # the first call only stores d(π^{v+1})
    assert first_stored[:, 0].tolist() == [0.4, 0.49, 0.6, 0.2]


def test_official_threshold_forces_every_pair_from_epoch_100():
    theta = [dkc_threshold(j, 1.05, 0.995, "official", 1.01) for j in range(12)]
    assert theta[9] > 1 > theta[10]  # j = epoch // p = 10 ⇒ epoch 100 with p = 10 (docs/methods.md#pitfalls, item 11)
    v = np.zeros((3, 1), dtype=np.int64)
    dist = np.tile(np.array([0.5, 0.5, 0.5, 0.5])[None, :, None], (1, 1, 3))
    stored = np.full((3, 1), 0.5)  # δ = 1 exactly: nobody moved
    assert dkc_update(v, stored, dist, np.array([3]), theta[9], False)[0].sum() == 0
    assert dkc_update(v, stored, dist, np.array([3]), theta[10], False)[0].sum() == 3
    assert dkc_threshold(40, 1.05, 0.995, "adaptive", 1.01) == pytest.approx(1.01)


def test_adaptive_cap_forces_an_advance():
    dist = np.full((1, 4, 1), 0.5)
    v, stored, calls = np.zeros((1, 1), dtype=np.int64), np.full((1, 1), 0.5), np.zeros((1, 1), dtype=np.int64)
    seen = []
    for _ in range(6):
        v, stored, calls = dkc_update(v, stored, dist, np.array([3]), 1.01, False, calls, max_calls=3)
        seen.append(int(v[0, 0]))
    assert seen == [0, 0, 1, 1, 1, 2]


# ------------------------------------------------------------------------- schedule of the method
def _setup(threshold: str, n_users: int = 6, n_items: int = 30, n_teachers: int = 2, **params):
    """A HetComp method over a fake 2-teacher ensemble (4 checkpoints each) and a frozen MF student."""
    rng = np.random.default_rng(0)
    train_u = np.repeat(np.arange(n_users), 3)
    train_i = np.concatenate([rng.choice(n_items, 3, replace=False) for _ in range(n_users)])
    ds = Dataset.from_indices(
        "t",
        np.arange(n_users).astype(str),
        np.arange(n_items).astype(str),
        (train_u, train_i),
        (np.array([0]), np.array([0])),
        (np.array([0]), np.array([1])),
        "ratio",
    )
    trajs = []
    for _ in range(n_teachers):
        items = np.empty((4, n_users, 12), dtype=np.int32)
        for c in range(4):
            for u in range(n_users):
                unseen = np.setdiff1d(np.arange(n_items), ds.seen_items(u))
                items[c, u] = rng.permutation(unseen)[:12]
        observed = ds.train.indices.astype(np.int32)
        trajs.append(Trajectory("fake", [0, 1, 2, 3], items, np.zeros(items.shape, np.float32), np.stack([observed] * 4), ds.train.indptr, []))

    class Teacher:
        weights, temperature = [1.0] * n_teachers, 10.0

        def trajectories(self):
            return trajs

    params = HetCompParams(top_k=10, positives=2, discrepancy_k=5, threshold=threshold, max_calls_per_stage=3, listwise_depths=(6, 2), **params)
    method = HetComp(params=params)
    student = MF(n_users, n_items, 4, init_std=0.1)
    method.setup(KDContext(ds, student, Teacher(), rng, 200))
    return method, student


@pytest.mark.parametrize(
    "threshold, advances",
    [
        # frozen student ⇒ δ = 1 at every call: official advances only once θ < 1 (epoch 100), then every call
        ("official", {100: 1, 110: 2, 120: 3}),
        # adaptive: θ ≥ 1.01 never passes, so the cap (3 calls) moves each pair every 30 epochs
        ("adaptive", {40: 1, 70: 2, 100: 3}),
    ],
)
def test_schedule_with_a_frozen_student(threshold, advances):
    method, student = _setup(threshold)
    history = {}
    for epoch in range(150):
        method.on_epoch_start(epoch, student)
        history[epoch] = (int(method.v.min()), int(method.v.max()), method.phase)
    assert method.calls == max(advances) // 10  # the first call is at epoch 10 and none after phase 2
    for epoch in range(150):
        done = max([0] + [c for e, c in advances.items() if e <= epoch])
        assert history[epoch][:2] == (done, done), epoch
    final = max(advances)
    assert history[final - 1][2] == 1 and history[final][2] == 2  # the listwise phase starts with the last checkpoint


def test_final_targets_are_the_aggregated_final_lists():
    method, student = _setup("official")
    from service.bundle.aggregation import aggregate_lists

    first, _ = aggregate_lists([l[0] for l in method.lists], 10, [1.0, 1.0], 10.0)
    assert np.array_equal(method.targets.numpy(), first)
    method.v.fill_(3)
    method._rebuild_targets()
    final, _ = aggregate_lists([l[3] for l in method.lists], 10, [1.0, 1.0], 10.0)
    assert np.array_equal(method.targets.numpy(), final) and method.phase == 2


def test_state_survives_a_checkpoint_round_trip():
    a, student = _setup("official")
    for epoch in range(121):
        a.on_epoch_start(epoch, student)
    b, _ = _setup("official")
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.v, b.v) and torch.equal(a.stored, b.stored)
    assert (b.calls, b.phase) == (a.calls, a.phase) == (12, 2)
    assert torch.equal(a.targets, b.targets)


# --------------------------------------------------------------------------------- stable losses
def test_complement_logsumexp_by_hand():
    s = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    out = complement_logsumexp(s, torch.tensor([0, 0, 1]), torch.tensor([1, 3, 0]))
    assert out[0].item() == pytest.approx(math.log(math.exp(0.5) + math.exp(2.0)), rel=1e-6)
    assert out[1].item() == pytest.approx(1.0 + math.log(3.0), rel=1e-6)
    out.sum().backward()
    assert s.grad[0, 1] == 0 and s.grad[0, 3] == 0 and s.grad[1, 0] == 0  # removed items get no gradient


def test_complement_is_exact_where_subtracting_sums_cancels():
    # 100 target items at the clamp (40), 10,000 rest items at −40: Σ_all e^r − Σ_top e^r is 0 in float32
    s = torch.cat([torch.full((1, 100), 40.0), torch.full((1, 10_000), -40.0)], dim=1)
    naive = s.exp().sum() - s[:, :100].exp().sum()
    assert naive.item() <= 0.0  # catastrophic cancellation (the official code then floors at 1e-5)
    rest = complement_logsumexp(s, torch.zeros(100, dtype=torch.long), torch.arange(100))
    assert rest.item() == pytest.approx(-40 + math.log(10_000), rel=1e-5)


def test_relaxed_listmle_by_hand_and_with_padding():
    r = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    rest = torch.tensor([math.log(3.0)])  # three rest items at score 0
    e = [math.exp(x) for x in (2.0, 1.0, 0.0)]
    naive = -sum(x - math.log(sum(e[k:]) + 3.0) for k, x in enumerate((2.0, 1.0, 0.0)))
    loss = relaxed_listmle(r, torch.tensor([[True, True, True]]), rest)
    assert loss.item() == pytest.approx(naive, rel=1e-6)
    padded = relaxed_listmle(torch.tensor([[2.0, 1.0, 0.0, 5.0]]), torch.tensor([[True, True, True, False]]), rest)
    assert padded.item() == pytest.approx(naive, rel=1e-6)  # padding is neither a target nor in a suffix
    loss.backward()
    assert torch.isfinite(r.grad).all()
    big = relaxed_listmle(torch.full((1, 50), 40.0), torch.ones(1, 50, dtype=torch.bool), torch.tensor([40.0 + math.log(25_000)]))
    assert torch.isfinite(big)


def test_epoch_mode_distils_every_user_once_per_epoch():
    method, student = _setup("official", n_users=23)
    method.params = method.params.model_copy(update={"users": "epoch"})
    nnz, bs = method.train_csr.nnz, 10  # 69 pairs → 7 batches
    from training.distill.base import Batch

    for epoch in range(2):
        method.on_epoch_start(epoch, student)
        seen = []
        for b, start in enumerate(range(0, nnz, bs)):
            n = min(bs, nnz - start)
            batch = Batch(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, dtype=torch.long), epoch, b)
            seen += method.batch_users(batch).tolist()
        assert sorted(seen) == list(range(23))


def test_without_trajectory_the_final_targets_and_the_listwise_phase_start_at_once():
    method, student = _setup("official", trajectory=False)
    assert method.phase == 2 and int(method.v.min()) == 3
    from service.bundle.aggregation import aggregate_lists

    final, _ = aggregate_lists([l[3] for l in method.lists], 10, [1.0, 1.0], 10.0)
    assert np.array_equal(method.targets.numpy(), final)
    for epoch in range(30):
        method.on_epoch_start(epoch, student)
    assert method.calls == 0  # no DKC at all
