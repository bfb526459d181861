"""The per-row Adam step of the torch loop (``train.adam_rows: batch``): row gradients from the
lookups, the update against the fused loop's per-row step and torch's Adam, and training with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import mf_with

from training.config import config_from_dict
from training.fused_bpr import Tables, _update
from training.models.gather_dot import gather_dot
from training.models.row_grads import mark_row_grads, mark_table, rows
from training.row_adam import row_adam_step
from training.runs import train_run
from training.trainer import base_loss

LR, WD, BETAS, EPS = 0.05, 0.01, (0.9, 0.999), 1e-8


def _model(U, I, marked):
    model = mf_with(U, I)
    tables = mark_row_grads(model) if marked else [model.user_emb.weight, model.item_emb.weight]
    return model, tables


def _bpr(model, users, pos, negs):
    u, p, n = (torch.from_numpy(a) for a in (users, pos, negs))
    return base_loss("bpr", model.score_pairs(u, p), model.score_candidates(u, n))


def _summed(table):
    """A marked table's row gradients added up into a dense tensor."""
    out = torch.zeros_like(table)
    for index, values in table.row_grads:
        out.index_add_(0, index, values)
    return out


def test_lookups_of_marked_tables_record_row_gradients_with_the_dense_values():
    rng = np.random.default_rng(0)
    U = rng.normal(size=(5, 3)).astype(np.float32)
    I = rng.normal(size=(7, 3)).astype(np.float32)
    users, pos, negs = np.array([0, 4, 4]), np.array([1, 1, 6]), np.array([[2, 3], [6, 6], [0, 2]])
    dense, _ = _model(U, I, marked=False)
    _bpr(dense, users, pos, negs).backward()
    marked, tables = _model(U, I, marked=True)
    _bpr(marked, users, pos, negs).backward()
    for table, ref in zip(tables, (dense.user_emb.weight, dense.item_emb.weight)):
        assert table.grad is None  # no dense gradient was built
        torch.testing.assert_close(_summed(table), ref.grad)
    read = torch.cat([index for index, _ in marked.item_emb.weight.row_grads])
    assert set(read.tolist()) == {0, 1, 2, 3, 6}  # the rows read, only
    table = torch.from_numpy(I).requires_grad_()
    mark_table(table)
    with torch.no_grad():  # evaluation: plain indexing, nothing recorded
        rows(table, torch.tensor([1]))
    assert table.row_grads == []
    anchor = torch.ones(2, 3, requires_grad=True)
    gather_dot(anchor, table, torch.tensor([[1, 1], [5, 0]])).sum().backward()
    ((index, values),) = table.row_grads
    assert index.tolist() == [1, 5, 0]  # each candidate row once, its gradients added up
    torch.testing.assert_close(values, torch.tensor([[2.0] * 3, [1.0] * 3, [1.0] * 3]))
    torch.testing.assert_close(anchor.grad, torch.stack([2 * table[1], table[5] + table[0]]).detach())


def test_two_torch_loop_steps_match_the_fused_loops_per_row_steps():
    rng = np.random.default_rng(3)
    U = rng.normal(0, 0.5, (6, 4)).astype(np.float32)
    I = rng.normal(0, 0.5, (9, 4)).astype(np.float32)
    users = np.array([0, 1, 1, 3, 4, 0], dtype=np.int64)  # user 2 and 5 never appear, nor items 7, 8
    pos = np.array([2, 0, 3, 2, 5, 1], dtype=np.int64)
    negs = np.array([[1, 4], [2, 2], [0, 5], [1, 3], [0, 2], [4, 3]], dtype=np.int64)
    batches = (slice(0, 4), slice(4, 6))

    model, tables = _model(U, I, marked=True)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WD, betas=BETAS, eps=EPS, fused=True)
    for sl in batches:
        opt.zero_grad(set_to_none=True)
        _bpr(model, users[sl], pos[sl], negs[sl]).backward()
        row_adam_step(opt, tables)
        assert all(p.grad is None and p.row_grads == [] and (p.row_slots == -1).all() for p in tables)
        opt.step()

    tu, ti = Tables(*U.shape, len(U)), Tables(*I.shape, len(I))
    tu.load(U, np.zeros_like(U), np.zeros_like(U))
    ti.load(I, np.zeros_like(I), np.zeros_like(I))
    work = np.empty(4, dtype=np.int64), np.empty(4, dtype=np.int64), np.empty((4, 2), dtype=np.int64)
    for step, sl in enumerate(batches, start=1):
        _update(users[sl], pos[sl], negs[sl], len(users[sl]), tu.kernel_args(), ti.kernel_args(), 4, work, LR, *BETAS, EPS, WD, step, 1.0)
    for table, t in ((model.user_emb.weight, tu), (model.item_emb.weight, ti)):
        P, M, V = t.segments()
        state = opt.state[table]
        np.testing.assert_allclose(table.detach().numpy(), P, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state["exp_avg"].numpy(), M, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(state["exp_avg_sq"].numpy(), V, rtol=1e-4, atol=1e-9)
        assert state["step"].item() == 2
    np.testing.assert_array_equal(model.user_emb.weight.detach().numpy()[[2, 5]], U[[2, 5]])  # untouched rows stay put
    np.testing.assert_array_equal(model.item_emb.weight.detach().numpy()[[7, 8]], I[[7, 8]])


def test_a_dense_gradient_updates_its_non_zero_rows_as_torchs_adam_does():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(6, 3)).astype(np.float32)
    grads = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]
    grads[1][[0, 4]] = 0.0  # rows 0 and 4 get no gradient in the second step
    ours, ref = torch.nn.Parameter(torch.from_numpy(W.copy())), torch.nn.Parameter(torch.from_numpy(W.copy()))
    mark_table(ours)  # marked, but its gradient arrives dense (a lookup written as plain indexing)
    opt = torch.optim.Adam([ours], lr=LR, weight_decay=WD, betas=BETAS, eps=EPS)
    ref_opt = torch.optim.Adam([ref], lr=LR, weight_decay=WD, betas=BETAS, eps=EPS)
    for k, g in enumerate(grads):
        ours.grad, ref.grad = torch.from_numpy(g.copy()), torch.from_numpy(g.copy())
        before = ours.detach().clone(), opt.state[ours]["exp_avg"].clone() if opt.state[ours] else None
        row_adam_step(opt, [ours])
        if k == 1:  # the skipped rows keep parameters and moments; the others move as torch's rows do
            torch.testing.assert_close(ours.detach()[[0, 4]], before[0][[0, 4]], rtol=0, atol=0)
            torch.testing.assert_close(opt.state[ours]["exp_avg"][[0, 4]], before[1][[0, 4]], rtol=0, atol=0)
            moved = [1, 2, 3, 5]
            ref_opt.step()
            torch.testing.assert_close(ours.detach()[moved], ref.detach()[moved], rtol=1e-5, atol=1e-6)
            with torch.no_grad():  # continue the reference from the same state
                ref.copy_(ours)
                for key in ("exp_avg", "exp_avg_sq"):
                    ref_opt.state[ref][key].copy_(opt.state[ours][key])
        else:
            ref_opt.step()
            torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(opt.state[ours]["exp_avg_sq"], ref_opt.state[ref]["exp_avg_sq"], rtol=1e-4, atol=1e-9)


def _cfg(**train):
    return config_from_dict(
        {
            "name": "tiny",
            "model": {"family": "mf", "dim": 8, "init_std": 0.1},
            "train": {"epochs": 40, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "progress": False, "engine": "torch", **train},
            "eval": {"ks": [5], "select": "hr@5", "patience": 100},
        }
    )


def test_the_torch_loop_with_per_row_adam_learns_and_resumes_exactly(tiny_dataset, tmp_path):
    result = train_run(_cfg(adam_rows="batch"), tmp_path / "a", dataset=tiny_dataset)
    assert result["engine"] == "torch" and result["adam_rows"] == "batch"
    assert result["test"]["metrics"]["hr@5"] >= 0.8, result["test"]  # random ranking: about 5 / 41
    train_run(_cfg(adam_rows="batch", epochs=20), tmp_path / "b", dataset=tiny_dataset)
    resumed = train_run(_cfg(adam_rows="batch"), tmp_path / "b", dataset=tiny_dataset, resume=True)
    assert resumed["test"]["metrics"] == result["test"]["metrics"]
    assert train_run(_cfg(epochs=1), tmp_path / "c", dataset=tiny_dataset)["adam_rows"] == "all"  # the default: torch's dense step
    assert train_run(_cfg(adam_rows="auto", epochs=1), tmp_path / "d", dataset=tiny_dataset)["adam_rows"] == "all"  # 108 rows ≤ 64 × 3
    assert train_run(_cfg(adam_rows="auto", epochs=1, batch_size=8), tmp_path / "e", dataset=tiny_dataset)["adam_rows"] == "batch"


@pytest.mark.parametrize("family", ["neumf", "lightgcn"])
def test_per_row_adam_trains_models_whose_lookups_give_dense_gradients(family, tiny_dataset, tmp_path):
    cfg = _cfg(adam_rows="batch", epochs=2)
    cfg.model.family = family
    assert train_run(cfg, tmp_path / family, dataset=tiny_dataset)["adam_rows"] == "batch"
