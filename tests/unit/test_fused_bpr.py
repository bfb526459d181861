"""The fused BPR-MF training path: one update against the torch path, its sampler, and a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import mf_with

from training.config import config_from_dict
from training.errors import TrainingError
from training.fused_bpr import FusedBPR, Tables, _epoch_pairs, _update
from training.runs import train_run
from training.trainer import base_loss

LR, WD, BETAS, EPS = 0.05, 0.01, (0.9, 0.999), 1e-8


def _torch_steps(U, I, batches):
    """Adam steps of the torch path (summed BPR loss, fused Adam with L2 decay) on ``batches``."""
    model = mf_with(U, I)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WD, betas=BETAS, eps=EPS, fused=True)
    losses = []
    for users, pos, negs in batches:
        opt.zero_grad()
        u, p, n = (torch.from_numpy(a) for a in (users, pos, negs))
        loss = base_loss("bpr", model.score_pairs(u, p), model.score_candidates(u, n))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    st_u, st_i = opt.state[model.user_emb.weight], opt.state[model.item_emb.weight]
    return model, st_u, st_i, losses


def test_two_update_steps_match_the_torch_path():
    rng = np.random.default_rng(3)
    U = rng.normal(0, 0.5, (5, 4)).astype(np.float32)
    I = rng.normal(0, 0.5, (7, 4)).astype(np.float32)
    # users and items repeat inside a batch (their gradients add up); item 6 is never sampled
    users = np.array([0, 1, 1, 3, 4, 0], dtype=np.int64)
    pos = np.array([2, 0, 3, 2, 5, 1], dtype=np.int64)
    negs = np.array([[1, 4], [2, 2], [0, 5], [1, 3], [0, 2], [4, 3]], dtype=np.int64)
    model, st_u, st_i, losses = _torch_steps(U, I, [(users[:4], pos[:4], negs[:4]), (users[4:], pos[4:], negs[4:])])

    tu, ti = _tables(U, I, per_row=False)
    total = 0.0
    for step, sl in ((1, slice(0, 4)), (2, slice(4, 6))):
        total += _update(users[sl], pos[sl], negs[sl], len(users[sl]), tu.kernel_args(), ti.kernel_args(), 4, _work(4, 2), LR, *BETAS, EPS, WD, step, 1.0)
    assert total == pytest.approx(sum(losses), rel=1e-5)
    (Uf, MU, _), (If, _, VI) = tu.segments(), ti.segments()
    assert not tu.grad.any() and not ti.grad.any()  # the gradients are left clear for the next step
    np.testing.assert_allclose(Uf, model.user_emb.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(If, model.item_emb.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(MU, st_u["exp_avg"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(VI, st_i["exp_avg_sq"].numpy(), rtol=1e-4, atol=1e-9)  # g² amplifies float32 rounding
    assert not np.allclose(If[6], I[6])  # untouched rows still decay, as with torch's dense Adam


def _tables(U, I, per_row):
    """Dense tables, or per-row ones with gradient slots for every row."""
    tu, ti = Tables(*U.shape, len(U) if per_row else None), Tables(*I.shape, len(I) if per_row else None)
    tu.load(U, np.zeros_like(U), np.zeros_like(U))
    ti.load(I, np.zeros_like(I), np.zeros_like(I))
    return tu, ti


def _work(batch, negatives):
    """The per-row step's slot scratch for the pairs of one batch (users, positives, negatives)."""
    return np.empty(batch, dtype=np.int64), np.empty(batch, dtype=np.int64), np.empty((batch, negatives), dtype=np.int64)


def test_batch_rows_adam_updates_only_the_touched_rows_exactly_as_the_dense_step_does():
    rng = np.random.default_rng(4)
    U = rng.normal(0, 0.5, (6, 3)).astype(np.float32)
    I = rng.normal(0, 0.5, (8, 3)).astype(np.float32)
    users, pos, negs = np.array([0, 2, 2]), np.array([1, 3, 1]), np.array([[4], [5], [4]])
    out = {}
    for lazy in (False, True):  # the dense step, the per-row step
        tu, ti = _tables(U, I, per_row=lazy)
        _update(users, pos, negs, 3, tu.kernel_args(), ti.kernel_args(), 3, _work(3, 1), LR, *BETAS, EPS, WD, 1, 1.0)
        assert not tu.grad.any() and not ti.grad.any()
        assert (tu.slot_of == -1).all() and (ti.slot_of == -1).all()  # every gradient slot freed for the next step
        out[lazy] = (tu.segments()[0], ti.segments()[0])
    touched_u, touched_i = [0, 2], [1, 3, 4, 5]
    np.testing.assert_array_equal(out[True][0][touched_u], out[False][0][touched_u])
    np.testing.assert_array_equal(out[True][1][touched_i], out[False][1][touched_i])
    np.testing.assert_array_equal(out[True][0][[1, 3, 4, 5]], U[[1, 3, 4, 5]])  # untouched rows stay put
    np.testing.assert_array_equal(out[True][1][[0, 2, 6, 7]], I[[0, 2, 6, 7]])
    assert not np.allclose(out[False][1][[0, 2, 6, 7]], I[[0, 2, 6, 7]])  # the dense step moves them (weight decay)


def _records(indptr, indices, n_items, n_neg, n_buckets, state):
    """One epoch's records of :func:`_epoch_pairs`: (users, positives, negatives)."""
    n = len(indices)
    out = np.empty(n, np.int32), np.empty(n, np.int32), np.empty((n, n_neg), np.int32)
    bits = np.zeros((n_items + 7) // 8, dtype=np.uint8)
    _epoch_pairs(indptr, indices, n_items, n_buckets, state, np.empty(n, np.int32), *out, bits)
    assert not bits.any()  # the scratch bitmap is left clear
    return out


def test_an_epoch_holds_every_training_pair_once_with_negatives_drawn_uniformly_outside_the_users_row():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0, 0], [0] * 8 + [1]], dtype=np.float32))
    indptr, indices = train.indptr.astype(np.int64), train.indices.astype(np.int32)
    state = np.array([12345], dtype=np.uint64)
    negatives: dict[int, list] = {0: [], 1: [], 2: []}
    for _ in range(3000):
        users, pos, negs = _records(indptr, indices, 9, 2, 2, state)
        assert sorted(zip(users.tolist(), pos.tolist())) == [(0, 0), (0, 1), (0, 4), (1, 3), (2, 8)]
        for u, row in zip(users, negs):
            negatives[int(u)].extend(row.tolist())
    for u, allowed in ((0, {2, 3, 5, 6, 7, 8}), (1, {0, 1, 2, 4, 5, 6, 7, 8}), (2, set(range(8)))):
        counts = np.bincount(negatives[u], minlength=9)
        assert set(np.flatnonzero(counts)) == allowed  # never one of the user's training items
        share = counts[sorted(allowed)] / counts.sum()
        assert np.abs(share - 1 / len(allowed)).max() < 0.02, share  # uniform over the others


def test_an_epoch_puts_the_pairs_in_every_order_equally_often_across_buckets():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=np.float32))  # pairs 0→0, 0→1, 1→2, 1→3
    indptr, indices = train.indptr.astype(np.int64), train.indices.astype(np.int32)
    state = np.array([99], dtype=np.uint64)
    counts: dict[tuple, int] = {}
    for _ in range(24_000):
        users, pos, _ = _records(indptr, indices, 6, 1, 3, state)  # three buckets for four pairs
        assert np.array_equal(users, pos // 2)  # a record keeps its user with its positive
        counts[tuple(pos)] = counts.get(tuple(pos), 0) + 1
    assert len(counts) == 24 and all(800 < c < 1200 for c in counts.values()), counts  # 1,000 each expected


def test_the_fused_loop_refuses_a_user_with_every_item_in_training():
    rows = np.array([[1, 1, 1], [1, 0, 0]], dtype=np.float32)
    dataset = type("D", (), {"train": sp.csr_matrix(rows), "n_users": 2, "n_items": 3})()
    config = config_from_dict({"model": {"family": "mf", "dim": 2}, "train": {"engine": "fused"}})
    model = mf_with(np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(TrainingError, match="user index 0 has every one of the 3 items"):
        FusedBPR(model, optimizer, dataset, config)


@pytest.mark.parametrize("rows_per_step", [None, 3])
def test_tables_hold_what_they_are_given_aligned_to_cache_lines(rows_per_step):
    rng = np.random.default_rng(1)
    P, M, V = (rng.normal(size=(7, 5)).astype(np.float32) for _ in range(3))
    t = Tables(7, 5, rows_per_step)
    assert t.buffer.ctypes.data % 64 == 0
    if rows_per_step is None:  # three [7, 5] tables, a gradient row per row
        assert t.buffer.size == 3 * 7 * 5 and t.grad.size == 7 * 5
    else:  # rows of 15 floats padded to one 64-byte line, gradient slots for 3 rows
        assert t.row_stride == 16 and t.buffer.size == 7 * 16 and t.grad.size == 3 * 5 and (t.slot_of == -1).all()
    t.load(P, M, V)
    r, s = t.row_stride, t.segment_stride
    assert t.buffer[3 * r + s + 4] == M[3, 4] and t.buffer[6 * r + 2 * s] == V[6, 0]  # the kernels' addressing
    out = [np.zeros_like(P) for _ in range(3)]
    t.store(*out)
    assert all(np.array_equal(a, b) for a, b in zip(out, (P, M, V)))


def _cfg(engine, family="mf"):
    return config_from_dict(
        {
            "name": "tiny",
            "model": {"family": family, "dim": 8, "init_std": 0.1},
            "train": {"epochs": 40, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "progress": False, "engine": engine},
            "eval": {"ks": [5], "select": "hr@5", "patience": 100},
        }
    )


def test_the_fused_path_learns_the_block_structure_and_resumes_exactly(tiny_dataset, tmp_path):
    result = train_run(_cfg("auto"), tmp_path / "a", dataset=tiny_dataset)
    assert result["engine"] == "fused"
    assert result["test"]["metrics"]["hr@5"] >= 0.8, result["test"]  # random ranking: about 5 / 41
    train_run(_cfg("fused").model_copy(update={"train": _cfg("fused").train.model_copy(update={"epochs": 20})}), tmp_path / "b", dataset=tiny_dataset)
    resumed = train_run(_cfg("fused"), tmp_path / "b", dataset=tiny_dataset, resume=True)
    assert resumed["test"]["metrics"] == result["test"]["metrics"]
    assert train_run(_cfg("torch"), tmp_path / "c", dataset=tiny_dataset)["engine"] == "torch"
    assert config_from_dict({"model": {"family": "mf"}}).train.engine == "torch", "published results reproduce on the default loop"


def test_fused_refuses_what_it_cannot_train(tiny_dataset, tmp_path):
    with pytest.raises(TrainingError, match=r"train.engine is 'fused' but model.family is 'neumf'"):
        train_run(_cfg("fused", family="neumf"), tmp_path / "n", dataset=tiny_dataset)


def test_batch_rows_adam_learns_the_block_structure(tiny_dataset, tmp_path):
    cfg = _cfg("fused")
    cfg.train.adam_rows = "batch"
    assert train_run(cfg, tmp_path / "b", dataset=tiny_dataset)["test"]["metrics"]["hr@5"] >= 0.8


def test_adam_rows_defaults_to_the_dense_step_and_auto_goes_per_row_on_large_tables():
    shipped = config_from_dict({"model": {"family": "mf"}, "train": {"batch_size": 1024, "negatives": 4}}).train
    assert shipped.adam_rows == "all" and shipped.adam_rows_for(138_493, 26_744) == "all"  # torch's optimisation at any size
    auto = shipped.model_copy(update={"adam_rows": "auto"})
    # MovieLens-100K (943 users, 1,682 items) with the shipped BPR configs: the dense step
    assert auto.adam_rows_for(943, 1682) == "all"
    assert auto.adam_rows_for(4000, 2144) == "all"  # exactly the rows a batch can touch
    assert auto.adam_rows_for(4000, 2145) == "batch"
    assert auto.adam_rows_for(138_493, 26_744) == "batch"  # MovieLens-20M's shape
    assert shipped.model_copy(update={"adam_rows": "batch"}).adam_rows_for(3, 3) == "batch"


def test_result_records_which_rows_adam_updated(tiny_dataset, tmp_path):
    assert train_run(_cfg("fused"), tmp_path / "f", dataset=tiny_dataset)["adam_rows"] == "all"
    cfg = _cfg("fused")
    cfg.train.adam_rows = "auto"
    assert train_run(cfg, tmp_path / "a", dataset=tiny_dataset)["adam_rows"] == "all"  # 108 rows ≤ 64 × 3
    cfg.train.batch_size = 8  # 8 × 3 rows per batch < 108: per-row
    assert train_run(cfg, tmp_path / "g", dataset=tiny_dataset)["adam_rows"] == "batch"
    assert train_run(_cfg("torch"), tmp_path / "t", dataset=tiny_dataset)["adam_rows"] == "all"
